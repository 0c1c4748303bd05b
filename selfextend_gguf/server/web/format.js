// Numbers as the page shows them: counts with thousands separators, seconds, rates.

export function count(n) {
  return Math.round(n).toLocaleString("en-US");
}

export function seconds(ms) {
  const s = ms / 1000;
  return s < 10 ? s.toFixed(2) + " s" : s < 100 ? s.toFixed(1) + " s" : Math.round(s) + " s";
}

export function rate(perSecond) {
  return perSecond >= 100 ? Math.round(perSecond) + " t/s" : perSecond.toFixed(1) + " t/s";
}
