// One answer from the server: the chat rendered with the model's template
// (POST /apply-template), then streamed from llama-server's native POST /completion. Its
// last event carries the server's own numbers: the prompt's length (tokens_evaluated),
// the tokens it actually read (timings.prompt_n; the rest came from the slot's cache) and
// both speeds.
import { postJSON, streamEvents } from "./api.js";

// The prompt's token count as the server counts it (also when it is too long to run).
export async function countTokens(messages, signal) {
  if (!messages.length) return 0;
  const out = await postJSON("v1/chat/completions/input_tokens", { messages }, signal);
  return out.input_tokens;
}

export async function countText(text, signal) {
  const out = await postJSON("tokenize", { content: text, add_special: false }, signal);
  return out.tokens.length;
}

function statsOf(last, firstTokenMs, totalMs) {
  if (!last) return null;
  const t = last.timings || {};
  return {
    prompt_tokens: last.tokens_evaluated,
    evaluated: t.prompt_n,
    reused: last.tokens_evaluated - t.prompt_n,
    prompt_ms: t.prompt_ms,
    prompt_per_second: t.prompt_per_second,
    predicted_n: t.predicted_n,
    predicted_ms: t.predicted_ms,
    predicted_per_second: t.predicted_per_second,
    first_token_ms: firstTokenMs,
    total_ms: totalMs,
    stop_type: last.stop_type,
  };
}

// onText(text so far) on every piece; onFirstToken() once; times count from `started`
// (performance.now() when the user asked). Resolves to {text, stats}; an abort (the stop
// button) rejects with an AbortError after onText has the partial text.
export async function answer({ messages, temperature, maxTokens, signal, started, onText, onFirstToken }) {
  const { prompt } = await postJSON("apply-template", { messages }, signal);
  const body = { prompt, n_predict: maxTokens, temperature, stream: true, cache_prompt: true };
  let text = "";
  let firstTokenMs = null;
  let last = null;
  for await (const event of streamEvents("completion", body, signal)) {
    if (event.content) {
      if (firstTokenMs === null) {
        firstTokenMs = performance.now() - started;
        onFirstToken();
      }
      text += event.content;
      onText(text);
    }
    if (event.stop) last = event;
  }
  return { text, stats: statsOf(last, firstTokenMs, performance.now() - started) };
}
