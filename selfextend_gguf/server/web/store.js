// Conversations and settings kept in the browser's localStorage. One key per conversation,
// so that saving one never rewrites the long documents of the others.
//
// A conversation:
//   {id, title, created, updated (ms since the epoch), system: "",
//    document: null | {name, text, tokens},
//    messages: [{role: "user" | "assistant", content, stopped?, error?, stats?}]}
// stats (an answer's, from the server's numbers): {prompt_tokens, evaluated, reused,
//   prompt_ms, prompt_per_second, predicted_n, predicted_ms, predicted_per_second,
//   first_token_ms, total_ms}

const PREFIX = "selfextend-gguf:";
const CONVERSATION = PREFIX + "conversation:";
const CURRENT = PREFIX + "current";
const SETTINGS = PREFIX + "settings";

export const DEFAULT_SETTINGS = { temperature: 0.2, max_tokens: 512 };

export function newConversation() {
  const now = Date.now();
  return {
    id: now.toString(36) + Math.random().toString(36).slice(2, 8),
    title: "", created: now, updated: now, system: "", document: null, messages: [],
  };
}

function parse(raw) {
  try {
    const conv = JSON.parse(raw);
    return conv && typeof conv.id === "string" && Array.isArray(conv.messages) ? conv : null;
  } catch (_) {
    return null;
  }
}

export function loadConversation(id) {
  const raw = localStorage.getItem(CONVERSATION + id);
  return raw === null ? null : parse(raw);
}

// newest first
export function listConversations() {
  const out = [];
  for (let k = 0; k < localStorage.length; k++) {
    const key = localStorage.key(k);
    if (!key.startsWith(CONVERSATION)) continue;
    const conv = parse(localStorage.getItem(key));
    if (conv) out.push({ id: conv.id, title: conv.title, updated: conv.updated || 0, document: conv.document?.name });
  }
  return out.sort((a, b) => b.updated - a.updated);
}

// An empty conversation is not stored (a new chat appears in the list once it has
// something). Returns an error message when the browser's storage is full.
export function saveConversation(conv) {
  if (!conv.messages.length && !conv.document && !conv.system) {
    localStorage.removeItem(CONVERSATION + conv.id);
    return null;
  }
  conv.updated = Date.now();
  try {
    localStorage.setItem(CONVERSATION + conv.id, JSON.stringify(conv));
    return null;
  } catch (err) {
    return `not saved in the browser (${err.name}): its storage for this page is full; delete old conversations`;
  }
}

export function deleteConversation(id) {
  localStorage.removeItem(CONVERSATION + id);
}

export function currentId() {
  return localStorage.getItem(CURRENT);
}

export function setCurrentId(id) {
  localStorage.setItem(CURRENT, id);
}

export function loadSettings() {
  try {
    return { ...DEFAULT_SETTINGS, ...JSON.parse(localStorage.getItem(SETTINGS) || "{}") };
  } catch (_) {
    return { ...DEFAULT_SETTINGS };
  }
}

export function saveSettings(settings) {
  localStorage.setItem(SETTINGS, JSON.stringify(settings));
}
