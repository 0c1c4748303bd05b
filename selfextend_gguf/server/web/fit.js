// Whether a prompt fits the server's context (n_ctx), and what to tell the user when it
// does not: the n_ctx to start the server with, and how much document the current one
// takes.
import { count } from "./format.js";

// a suggested --n-ctx is rounded up to this
const N_CTX_STEP = 1024;

export function budget(nCtx, promptTokens, maxTokens) {
  return {
    used: promptTokens,
    left: Math.max(0, nCtx - promptTokens),
    // the server's rule: a prompt leaves room for at least one generated token
    fits: promptTokens < nCtx,
    // and room for a whole answer of max_tokens
    roomy: promptTokens + maxTokens <= nCtx,
    needed: Math.ceil((promptTokens + maxTokens) / N_CTX_STEP) * N_CTX_STEP,
  };
}

// props: the server's /props; documentTokens: the document's share of the prompt (0 without one)
export function advice(props, b, maxTokens, documentTokens) {
  const nCtx = props.default_generation_settings.n_ctx;
  const train = props.n_ctx_train;
  if (b.fits && b.roomy) return null;
  if (b.fits) {
    return { level: "warning",
             text: `Only ${count(nCtx - b.used)} tokens are left for the answer (max tokens ${count(maxTokens)}): ` +
                   `it may be cut short. A server started with --n-ctx ${b.needed} has room for all of it.` };
  }
  const rest = b.used - documentTokens;
  const room = Math.max(0, nCtx - rest - maxTokens);
  let text = `Too long for this server: the prompt takes ${count(b.used)} tokens and its n_ctx is ${count(nCtx)}. ` +
             `Start the server with --n-ctx ${b.needed} or more` +
             (b.needed > train ? ` (Self-Extend lets the model read past its trained ${count(train)} tokens)` : "") + ".";
  if (documentTokens) {
    text += ` With this conversation and max tokens ${count(maxTokens)}, this server fits a document of ` +
            `at most ${count(room)} tokens.`;
  }
  return { level: "error", text };
}
