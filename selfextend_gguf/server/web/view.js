// The conversation on screen: its messages (user text as typed, answers as Markdown), each
// answer's numbers from the server, and the buttons on each message.
import { count, rate, seconds } from "./format.js";
import { renderMarkdown } from "./markdown.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, className, onClick) {
  const b = el("button", className, label);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

// what the server reported for one answer, in words
export function statsText(s) {
  const parts = [`prompt ${count(s.prompt_tokens)} tokens: ${count(s.evaluated)} read, ` +
                 `${count(s.reused)} reused from the cache`];
  if (s.evaluated) parts.push(`read in ${seconds(s.prompt_ms)} (${rate(s.prompt_per_second)})`);
  parts.push(`answer ${count(s.predicted_n)} tokens` +
             (s.predicted_n ? ` in ${seconds(s.predicted_ms)} (${rate(s.predicted_per_second)})` : ""));
  if (s.first_token_ms !== null && s.first_token_ms !== undefined) {
    parts.push(`first words after ${seconds(s.first_token_ms)}`);
  }
  parts.push(`total ${seconds(s.total_ms)}`);
  return parts.join(" · ");
}

function statsNode(stats) {
  const node = el("div", "stats", statsText(stats));
  // the same numbers for scripts (and tests) that read the page
  node.dataset.promptTokens = stats.prompt_tokens;
  node.dataset.evaluated = stats.evaluated;
  node.dataset.reused = stats.reused;
  node.dataset.firstTokenMs = Math.round(stats.first_token_ms ?? -1);
  node.dataset.totalMs = Math.round(stats.total_ms);
  return node;
}

// handlers: {copy(text, button), edit(index), regenerate(index)}; busy: no edits meanwhile
export function messageNode(message, index, handlers, busy) {
  const node = el("article", "message " + message.role);
  node.dataset.index = index;
  node.append(el("div", "role", message.role === "user" ? "You" : "Assistant"));
  const content = el("div", message.role === "user" ? "content plain" : "content markdown");
  if (message.role === "user") content.textContent = message.content;
  else renderMarkdown(content, message.content);
  node.append(content);
  if (message.stopped) node.append(el("div", "tag stopped", "stopped"));
  if (message.error) node.append(el("div", "error", message.error));
  if (message.stats) node.append(statsNode(message.stats));
  const actions = el("div", "actions");
  actions.append(button("Copy", "copy", (e) => handlers.copy(message.content, e.currentTarget)));
  if (!busy) {
    if (message.role === "user") actions.append(button("Edit", "edit", () => handlers.edit(index)));
    else actions.append(button("Regenerate", "regenerate", () => handlers.regenerate(index)));
  }
  node.append(actions);
  return node;
}

// A user message being edited: a text box, then send (the conversation after it is
// dropped and answered again) or cancel.
export function editNode(message, index, onSend, onCancel) {
  const node = el("article", "message user editing");
  node.dataset.index = index;
  const box = el("textarea", "edit-box");
  box.value = message.content;
  box.rows = Math.min(12, Math.max(3, message.content.split("\n").length));
  const actions = el("div", "actions");
  actions.append(button("Cancel", "cancel", onCancel), button("Send", "resend", () => onSend(box.value)));
  node.append(el("div", "role", "You"), box, actions);
  setTimeout(() => box.focus(), 0);
  return node;
}

// The answer being written: "reading the prompt" with a clock until the first words, then
// the text as it streams.
export class PendingAnswer {
  constructor(promptTokens) {
    this.node = el("article", "message assistant pending");
    this.node.append(el("div", "role", "Assistant"));
    this.phase = el("div", "phase");
    this.content = el("div", "content markdown");
    this.node.append(this.phase, this.content);
    this.started = performance.now();
    this.promptTokens = promptTokens;
    this.text = "";
    this.queued = false;
    this.tick();
    this.clock = setInterval(() => this.tick(), 250);
  }

  tick() {
    const s = seconds(performance.now() - this.started);
    this.phase.textContent = this.text
      ? `writing… ${s}`
      : `reading the prompt (${count(this.promptTokens)} tokens; what the server holds already is reused)… ${s}`;
  }

  // rendered at most once a frame: a long answer is parsed again on each piece
  setText(text) {
    this.text = text;
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      renderMarkdown(this.content, this.text);
    });
  }

  done() {
    clearInterval(this.clock);
  }
}

export function conversationList(container, items, currentId, onOpen, onDelete) {
  container.replaceChildren();
  for (const item of items) {
    const row = el("div", "conversation" + (item.id === currentId ? " current" : ""));
    row.dataset.id = item.id;
    const open = button(item.title || item.document || "(untitled)", "open", () => onOpen(item.id));
    open.title = new Date(item.updated).toLocaleString();
    row.append(open, button("×", "delete", () => onDelete(item.id)));
    row.lastChild.title = "Delete this conversation";
    container.append(row);
  }
}
