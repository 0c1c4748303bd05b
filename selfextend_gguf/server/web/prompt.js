// The chat messages that a conversation sends: the system prompt with the document (the
// way `selfextend-gguf chat --file` puts it), then the turns. The document comes first, so
// every later question starts with the same tokens and the server reads it only once.

export const DOCUMENT_INTRO = "You are a helpful assistant. Answer questions about the document below.";

export function systemText(conv) {
  const system = (conv.system || "").trim();
  if (!conv.document) return system;
  return `${system || DOCUMENT_INTRO}\n\nDocument (${conv.document.name}):\n${conv.document.text}`;
}

// the messages before index `upto` of the conversation
export function chatMessages(conv, upto = conv.messages.length) {
  const out = [];
  const system = systemText(conv);
  if (system) out.push({ role: "system", content: system });
  for (const m of conv.messages.slice(0, upto)) out.push({ role: m.role, content: m.content });
  return out;
}
