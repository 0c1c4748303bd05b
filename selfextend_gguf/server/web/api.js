// The server's API as the page calls it. Every call sends the API key when the user gave
// one; error bodies ({"error": {"message": ...}}) become ApiError. Paths are relative, so
// the page also works behind a proxy that serves it under a sub-path.

const KEY_NAME = "selfextend-gguf:api-key";

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code || null;
  }
}

// remembered in localStorage only when the user asks; else for this tab alone
export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || "";
}

export function setApiKey(key, remember) {
  forgetApiKey();
  (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
}

export function forgetApiKey() {
  sessionStorage.removeItem(KEY_NAME);
  localStorage.removeItem(KEY_NAME);
}

function headers(json) {
  const out = {};
  if (json) out["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) out["Authorization"] = "Bearer " + key;
  return out;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  try {
    const body = await response.json();
    const err = body.error || {};
    message = err.message || message;
    code = err.code || null;
  } catch (_) {
    // not JSON (a proxy's page): the status line says enough
  }
  return new ApiError(response.status, message, code);
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: headers(false) });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

export async function postJSON(path, body, signal) {
  const response = await fetch(path, {
    method: "POST", headers: headers(true), body: JSON.stringify(body), signal,
  });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// A streamed POST's server-sent events, each `data: {json}` parsed. An error event (the
// server's {"error": ...} after the stream began) is thrown.
export async function* streamEvents(path, body, signal) {
  const response = await fetch(path, {
    method: "POST", headers: headers(true), body: JSON.stringify(body), signal,
  });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (!data || data === "[DONE]") continue;
        const item = JSON.parse(data);
        if (item.error) throw new ApiError(500, item.error.message || "the server stopped the answer",
                                           item.error.code);
        yield item;
      }
    }
  }
}
