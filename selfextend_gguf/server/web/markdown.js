// Markdown to DOM nodes, built with createElement and text nodes only: whatever a model's
// answer or a document holds (<script>, <img onerror=...>, ...) is shown as text and never
// parsed as HTML. The common subset that chat models write: fenced code, headings, lists,
// quotes, tables, rules, and inline code, bold, italic, strike-through and links.

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>\s?/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
}

function isTableStart(lines, i) {
  return lines[i].includes("|") && i + 1 < lines.length && lines[i + 1].includes("-") &&
         TABLE_RULE.test(lines[i + 1]);
}

// ------------------------------------------------------------------------------ inline

// links are followed only to the web or to mail: never javascript:, data: and the like
function safeUrl(raw) {
  try {
    const url = new URL(raw, document.baseURI);
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch (_) {
    return null;
  }
}

function link(href, label) {
  const a = el("a");
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  inline(a, label);
  return a;
}

// [pattern, build(match) -> node or null (null: show the match as text)]
const INLINE = [
  [/(`+)([\s\S]*?[^`])\1(?!`)/, (m) => { const c = el("code"); c.textContent = m[2].trim() || m[2]; return c; }],
  [/\[([^\[\]\n]+)\]\(\s*<?([^\s()<>]+(?:\([^\s()<>]*\))?)>?(?:\s+"[^"\n]*")?\s*\)/,
   (m) => { const href = safeUrl(m[2]); return href ? link(href, m[1]) : null; }],
  [/\bhttps?:\/\/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]]/,
   (m) => { const href = safeUrl(m[0]); if (!href) return null; const a = link(href, ""); a.textContent = m[0]; return a; }],
  // underscores only around whole words: never inside names such as window.__proto__
  [/\*\*(?=\S)([\s\S]*?\S)\*\*|(?<=^|[\s(\["'])__(?=\S)([\s\S]*?\S)__(?=$|[\s)\]"'.,;:!?])/,
   (m) => wrap("strong", m[1] ?? m[2])],
  [/~~(?=\S)([\s\S]*?\S)~~/, (m) => wrap("del", m[1])],
  [/\*(?=[^\s*])([\s\S]*?[^\s*])\*|(?<=^|[\s(\["'])_(?=[^\s_])([\s\S]*?[^\s_])_(?=$|[\s)\]"'.,;:!?])/,
   (m) => wrap("em", m[1] ?? m[2])],
  [/\n/, () => el("br")],
];

function wrap(tag, text) {
  const node = el(tag);
  inline(node, text);
  return node;
}

function inline(parent, text) {
  while (text) {
    let best = null;
    for (const [pattern, build] of INLINE) {
      const m = pattern.exec(text);
      if (m && (best === null || m.index < best.m.index)) best = { m, build };
    }
    if (best === null) {
      parent.append(document.createTextNode(text));
      return;
    }
    const { m, build } = best;
    if (m.index > 0) parent.append(document.createTextNode(text.slice(0, m.index)));
    const node = build(m);
    parent.append(node ?? document.createTextNode(m[0]));
    text = text.slice(m.index + m[0].length);
  }
}

// ------------------------------------------------------------------------------ blocks

function parseFence(lines, i) {
  const [, fence, lang] = FENCE.exec(lines[i]);
  const body = [];
  i++;
  // an unclosed fence (an answer still streaming) runs to the end
  while (i < lines.length && !(lines[i].trim().startsWith(fence) && lines[i].trim().replace(/[`~]/g, "") === "")) {
    body.push(lines[i]);
    i++;
  }
  const pre = el("pre");
  const code = el("code");
  if (lang) code.dataset.lang = lang;
  code.textContent = body.join("\n");
  pre.append(code);
  return [pre, i + 1];
}

function parseList(lines, i) {
  const first = ITEM.exec(lines[i]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = el(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) list.start = parseInt(first[2], 10);
  let item = null;
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || m[1].length < indent) break;
    if (m[1].length > indent && item) {
      const [sub, next] = parseList(lines, i);
      item.append(sub);
      i = next;
      continue;
    }
    if (/\d/.test(m[2]) !== ordered) break;
    item = el("li");
    const text = [m[3]];
    i++;
    // lines that continue the item's text
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) {
      text.push(lines[i].trim());
      i++;
    }
    inline(item, text.join("\n"));
    list.append(item);
    // a blank line between items keeps the list going
    if (i + 1 < lines.length && !lines[i].trim() && ITEM.test(lines[i + 1]) &&
        ITEM.exec(lines[i + 1])[1].length >= indent) i++;
  }
  return [list, i];
}

function cells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function parseTable(lines, i) {
  const head = cells(lines[i]);
  const aligns = cells(lines[i + 1]).map((c) =>
    c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : c.startsWith(":") ? "left" : "");
  const table = el("table");
  const thead = el("thead");
  const tbody = el("tbody");
  const row = (values, tag) => {
    const tr = el("tr");
    head.forEach((_, k) => {
      const cell = el(tag, aligns[k] ? "align-" + aligns[k] : "");
      inline(cell, values[k] ?? "");
      tr.append(cell);
    });
    return tr;
  };
  thead.append(row(head, "th"));
  i += 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes("|")) {
    tbody.append(row(cells(lines[i]), "td"));
    i++;
  }
  table.append(thead, tbody);
  const box = el("div", "table-box");
  box.append(table);
  return [box, i];
}

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i++;
    } else if (FENCE.test(line)) {
      const [node, next] = parseFence(lines, i);
      out.push(node);
      i = next;
    } else if ((m = HEADING.exec(line))) {
      out.push(wrap("h" + m[1].length, m[2]));
      i++;
    } else if (RULE.test(line)) {
      out.push(el("hr"));
      i++;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && QUOTE.test(lines[i])) inner.push(lines[i++].replace(QUOTE, ""));
      const quote = el("blockquote");
      quote.append(...blocks(inner));
      out.push(quote);
    } else if (ITEM.test(line)) {
      const [node, next] = parseList(lines, i);
      out.push(node);
      i = next;
    } else if (isTableStart(lines, i)) {
      const [node, next] = parseTable(lines, i);
      out.push(node);
      i = next;
    } else {
      const text = [line];
      i++;
      while (i < lines.length && lines[i].trim() && !startsBlock(lines[i]) && !isTableStart(lines, i)) {
        text.push(lines[i++]);
      }
      out.push(wrap("p", text.join("\n")));
    }
  }
  return out;
}

export function renderMarkdown(container, text) {
  container.replaceChildren(...blocks(String(text).replace(/\r\n?/g, "\n").split("\n")));
}
