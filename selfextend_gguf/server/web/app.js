// The page: connects to the server (asking for the API key when it needs one), keeps the
// current conversation, and wires the buttons. document.body's data-state says what the
// page is doing (loading, key, idle, busy) and data-phase where an answer is (counting,
// reading, writing), for people and for the browser tests alike.
import { apiKey, forgetApiKey, getJSON, setApiKey } from "./api.js";
import { answer, countText, countTokens } from "./chat.js";
import { advice, budget } from "./fit.js";
import { count, rate } from "./format.js";
import { chatMessages } from "./prompt.js";
import * as store from "./store.js";
import { PendingAnswer, conversationList, editNode, messageNode } from "./view.js";

const $ = (id) => document.getElementById(id);

const page = {
  props: null,
  conv: null,
  settings: store.loadSettings(),
  busy: false,
  controller: null,
  editing: null,     // the index of the user message being edited
  used: null,        // the conversation's tokens in the context, as last counted
  countSeq: 0,       // the latest count wins
};

function nCtx() {
  return page.props.default_generation_settings.n_ctx;
}

function setState(state, phase) {
  document.body.dataset.state = state;
  if (phase) document.body.dataset.phase = phase;
  else delete document.body.dataset.phase;
}

function notice(text, level = "info") {
  const node = $("notice");
  node.textContent = text || "";
  node.className = text ? level : "";
}

// ------------------------------------------------------------------------ the server

async function connect() {
  setState("loading");
  try {
    page.props = await getJSON("props");
  } catch (err) {
    if (err.status === 401) return askKey(apiKey() ? "The server refused that key." : "");
    notice(`Cannot reach the server: ${err.message}. Reload the page when it runs.`, "error");
    return;
  }
  $("forget-key").hidden = !apiKey();
  $("max-tokens").max = nCtx();
  showConversation();
  setState("idle");
}

function askKey(message) {
  setState("key");
  $("key-error").textContent = message;
  $("key-error").hidden = !message;
  $("key-input").value = "";
  if (!$("key-dialog").open) $("key-dialog").showModal();
  $("key-input").focus();
}

function onKeySubmit(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  setApiKey(key, $("key-remember").checked);
  $("key-dialog").close();
  connect();
}

function renderStatus() {
  const p = page.props;
  $("status-model").textContent = p.model_alias;
  $("status-model").title = p.model_path;
  $("status-ctx").textContent = `n_ctx ${count(nCtx())} (trained ${count(p.n_ctx_train)})` +
                                (p.total_slots > 1 ? ` · ${p.total_slots} slots` : "");
  const se = p.self_extend;
  $("status-se").textContent = se
    ? `Self-Extend G=${se.group_size} W=${se.neighbor_window} (${p.self_extend_origin || "set"})`
    : nCtx() <= p.n_ctx_train ? "Self-Extend off: n_ctx is within the trained window"
      : "Self-Extend off: vanilla attention";
  $("status-se").className = se ? "on" : "off";
  $("status-used").textContent = page.used === null ? ""
    : `context: ${count(page.used)} used · ${count(Math.max(0, nCtx() - page.used))} left`;
  const last = [...page.conv.messages].reverse().find((m) => m.stats)?.stats;
  $("status-speed").textContent = last
    ? `last answer: prompt ${last.evaluated ? rate(last.prompt_per_second) : "from the cache"} · ` +
      `generation ${last.predicted_n ? rate(last.predicted_per_second) : "–"}`
    : "";
}

// ------------------------------------------------------------------------ conversation

function save() {
  const error = store.saveConversation(page.conv);
  $("save-note").textContent = error || "";
  store.setCurrentId(page.conv.id);
  renderList();
}

function renderList() {
  conversationList($("conversations"), store.listConversations(), page.conv.id, openConversation,
                   deleteConversation);
}

function openConversation(id) {
  if (page.busy) return;
  page.conv = store.loadConversation(id) || store.newConversation();
  store.setCurrentId(page.conv.id);
  page.editing = null;
  notice("");
  showConversation();
}

function deleteConversation(id) {
  if (page.busy || !confirm("Delete this conversation?")) return;
  store.deleteConversation(id);
  if (id === page.conv.id) {
    page.conv = store.newConversation();
    showConversation();
  } else {
    renderList();
  }
}

function showConversation() {
  $("system").value = page.conv.system || "";
  renderDocument();
  renderMessages();
  renderList();
  updateUsage();
}

const handlers = {
  copy: copyText,
  edit(index) {
    page.editing = index;
    renderMessages();
  },
  regenerate(index) {
    page.conv.messages = page.conv.messages.slice(0, index);
    generate();
  },
};

function renderMessages() {
  const box = $("messages");
  box.replaceChildren(...page.conv.messages.map((m, i) =>
    i === page.editing
      ? editNode(m, i, (text) => resend(i, text), () => { page.editing = null; renderMessages(); })
      : messageNode(m, i, handlers, page.busy)));
  box.scrollTop = box.scrollHeight;
  renderStatus();
}

function resend(index, text) {
  if (!text.trim()) return;
  page.editing = null;
  page.conv.messages = [...page.conv.messages.slice(0, index), { role: "user", content: text.trim() }];
  generate();
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // no clipboard API (a page served over plain http to another machine): the old way
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

// The conversation's tokens (with the document) as the server counts them, and whether
// it fits with room for an answer. Right after an answer, the server's own numbers.
async function updateUsage(stats = null) {
  const seq = ++page.countSeq;
  let used;
  if (stats) {
    used = stats.prompt_tokens + stats.predicted_n;
  } else {
    try {
      used = await countTokens(chatMessages(page.conv));
    } catch (err) {
      if (seq === page.countSeq) notice(`Could not count the tokens: ${err.message}`, "error");
      return;
    }
  }
  if (seq !== page.countSeq) return;
  page.used = used;
  showFit(used);
  renderStatus();
}

function showFit(promptTokens) {
  const b = budget(nCtx(), promptTokens, page.settings.max_tokens);
  const a = advice(page.props, b, page.settings.max_tokens, page.conv.document?.tokens || 0);
  $("fit").hidden = !a;
  $("fit").textContent = a ? a.text : "";
  $("fit").className = a ? a.level : "";
  return b;
}

// ------------------------------------------------------------------------ the document

function renderDocument() {
  const doc = page.conv.document;
  $("doc-info").textContent = !doc ? "No document: open or paste one to ask about it."
    : `${doc.name}: ${count(doc.text.length)} characters, ` +
      (doc.tokens === null ? "counting tokens…" : `${count(doc.tokens)} tokens`);
  $("doc-info").className = doc ? "loaded" : "";
  $("doc-remove").hidden = !doc;
  $("doc-preview").hidden = !doc;
  // the beginning is enough to recognize it; a whole book would slow the page
  $("doc-text").textContent = doc ? doc.text.slice(0, 4000) + (doc.text.length > 4000 ? "\n…" : "") : "";
}

async function setDocument(name, text) {
  if (text.includes("\u0000")) {
    notice(`${name} is not a text file.`, "error");
    return;
  }
  if (page.conv.messages.length) notice("The next question reads the conversation again with this document.");
  page.conv.document = { name, text, tokens: null };
  if (!page.conv.title) page.conv.title = name;
  renderDocument();
  try {
    page.conv.document.tokens = await countText(text);
  } catch (err) {
    notice(`Could not count the document's tokens: ${err.message}`, "error");
  }
  renderDocument();
  save();
  updateUsage();
}

async function onFile(event) {
  const file = event.target.files[0];
  event.target.value = "";
  if (file) setDocument(file.name, await file.text());
}

function removeDocument() {
  page.conv.document = null;
  renderDocument();
  save();
  updateUsage();
}

// ------------------------------------------------------------------------ answering

function setBusy(busy) {
  page.busy = busy;
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  for (const id of ["new-chat", "file-input", "paste-open", "doc-remove", "system"]) $(id).disabled = busy;
  document.querySelector("label[for=file-input]").classList.toggle("disabled", busy);
  setState(busy ? "busy" : "idle", busy ? "counting" : null);
}

// the question goes back into the text box when no answer came
function takeBackQuestion() {
  const last = page.conv.messages[page.conv.messages.length - 1];
  if (last?.role !== "user") return;
  page.conv.messages.pop();
  if (!$("prompt").value.trim()) $("prompt").value = last.content;
}

async function generate() {
  const started = performance.now();
  const messages = chatMessages(page.conv);
  const controller = new AbortController();
  page.controller = controller;
  setBusy(true);
  // the question is kept even if the tab is closed before the answer
  if (!page.conv.title) page.conv.title = (page.conv.messages[0]?.content || "").slice(0, 60);
  save();
  renderMessages();
  notice("");
  let pending = null;
  let partial = "";
  try {
    const promptTokens = await countTokens(messages, controller.signal);
    const b = showFit(promptTokens);
    if (!b.fits) {
      takeBackQuestion();
      // in the notice too: the count without the question may fit, and clear the box above
      notice("Not sent. " + $("fit").textContent, "error");
      return;
    }
    pending = new PendingAnswer(promptTokens);
    $("messages").append(pending.node);
    $("messages").scrollTop = $("messages").scrollHeight;
    setState("busy", "reading");
    const { text, stats } = await answer({
      messages, temperature: page.settings.temperature, maxTokens: page.settings.max_tokens,
      signal: controller.signal, started,
      onFirstToken: () => setState("busy", "writing"),
      onText: (t) => {
        partial = t;
        pending.setText(t);
        const box = $("messages");
        if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
      },
    });
    page.conv.messages.push({ role: "assistant", content: text, stats });
  } catch (err) {
    if (err.name === "AbortError") {
      if (partial) {
        page.conv.messages.push({ role: "assistant", content: partial, stopped: true });
      } else {
        takeBackQuestion();
        notice("Stopped before the answer began: the question is back in the box.");
      }
    } else if (partial) {
      page.conv.messages.push({ role: "assistant", content: partial, error: err.message });
    } else {
      takeBackQuestion();
      if (err.status === 401) {
        askKey("The server asks for an API key (or refused this one).");
      } else {
        notice(err.message, "error");
      }
    }
  } finally {
    pending?.done();
    page.controller = null;
    save();
    setBusy(false);
    if ($("key-dialog").open) setState("key");
    renderMessages();
    updateUsage(page.conv.messages[page.conv.messages.length - 1]?.stats);
  }
}

function send(event) {
  event?.preventDefault();
  const text = $("prompt").value.trim();
  if (page.busy || !text || !page.props) return;
  page.conv.messages.push({ role: "user", content: text });
  $("prompt").value = "";
  generate();
}

function stop() {
  page.controller?.abort();
}

// ------------------------------------------------------------------------ settings

function bindSettings() {
  $("temperature").value = page.settings.temperature;
  $("max-tokens").value = page.settings.max_tokens;
  $("temperature").addEventListener("change", () => {
    const t = parseFloat($("temperature").value);
    if (Number.isFinite(t) && t >= 0) page.settings.temperature = t;   // else: the value before
    $("temperature").value = page.settings.temperature;
    store.saveSettings(page.settings);
  });
  $("max-tokens").addEventListener("change", () => {
    const n = parseInt($("max-tokens").value, 10);
    if (Number.isFinite(n) && n >= 1) page.settings.max_tokens = n;
    $("max-tokens").value = page.settings.max_tokens;
    store.saveSettings(page.settings);
    if (page.used !== null) showFit(page.used);
  });
  let timer = null;
  $("system").addEventListener("input", () => {
    page.conv.system = $("system").value;
    clearTimeout(timer);
    timer = setTimeout(() => { save(); updateUsage(); }, 400);
  });
}

function bind() {
  bindSettings();
  $("composer").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
  });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => {
    page.conv = store.newConversation();
    page.editing = null;
    notice("");
    showConversation();
    $("prompt").focus();
  });
  $("file-input").addEventListener("change", onFile);
  $("doc-remove").addEventListener("click", removeDocument);
  $("paste-open").addEventListener("click", () => $("paste-dialog").showModal());
  $("paste-cancel").addEventListener("click", () => $("paste-dialog").close());
  $("paste-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("paste-text").value;
    $("paste-dialog").close();
    if (text.trim()) setDocument($("paste-name").value.trim() || "pasted text", text);
    $("paste-text").value = "";
  });
  $("key-form").addEventListener("submit", onKeySubmit);
  // the key is needed: Escape does not close its dialog
  $("key-dialog").addEventListener("cancel", (e) => e.preventDefault());
  $("forget-key").addEventListener("click", () => {
    forgetApiKey();
    location.reload();
  });
}

bind();
page.conv = store.loadConversation(store.currentId()) || store.newConversation();
connect();
