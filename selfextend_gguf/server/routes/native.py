"""llama-server's own endpoints: /health, /props, /slots (and the slot actions save,
restore, erase: /slots/{id}?action=...), /metrics, /tokenize and /detokenize. Its
generation routes (/completion, /infill) are in native_completion.py."""

from __future__ import annotations

from typing import Any, Dict, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from ... import __version__
from ...engine.state_file import llama_cpp_pin
from .. import slot_files
from ..bridge import on_scheduler_thread
from ..context import ServerContext, server_of
from ..errors import error_for, error_response
from ..schemas import DetokenizeRequest, NativeCompletionRequest, TokenizeRequest
from .native_completion import generation_settings

router = APIRouter()


@router.get("/health")
@router.get("/v1/health")
async def health(server: ServerContext = Depends(server_of)):
    slots = [slot.stats() for slot in server.scheduler.slots]
    return {"status": "ok", "slots_total": server.n_slots, "slots_idle": sum(not s["busy"] for s in slots),
            "queue": server.scheduler.n_waiting, "queue_max": server.max_queue, "slots": slots,
            "n_ctx": server.llm.n_ctx(), "memory": server.llm.memory_breakdown()}


def _chat_template(llm) -> Dict[str, Any]:
    """The chat template's source and capabilities (a GGUF template that llama.cpp cannot
    parse still serves completions: then the source alone)."""
    try:
        formatter = llm.chat_formatter
        return {"chat_template": formatter._templates.source(), "chat_template_caps": formatter.caps}
    except Exception:  # noqa: BLE001 - reported as the GGUF's text, without capabilities
        return {"chat_template": llm.model.chat_template() or "", "chat_template_caps": {}}


def _piece(llm, token: int) -> str:
    return llm.token_bytes(token, True).decode("utf-8", errors="replace") if token >= 0 else ""


@router.get("/props")
async def props(server: ServerContext = Depends(server_of)):
    llm = server.llm
    se = llm.self_extend
    return {
        "default_generation_settings": {"n_ctx": llm.n_ctx(),
                                        "params": generation_settings(llm, NativeCompletionRequest(prompt=""))},
        "total_slots": server.n_slots, "model_alias": server.model_name, "model_path": llm.model_path,
        "modalities": {"vision": False, "video": False, "audio": False},
        "endpoint_slots": True, "endpoint_props": False, "endpoint_metrics": server.metrics is not None,
        **_chat_template(llm),
        "bos_token": _piece(llm, llm.token_bos()), "eos_token": _piece(llm, llm.token_eos()),
        "build_info": f"selfextend-gguf {__version__}, {llama_cpp_pin()}",
        "is_sleeping": False,
        "n_ctx_train": llm.n_ctx_train(),
        "self_extend": {"group_size": se.group_size, "neighbor_window": se.neighbor_window} if se else None,
        # where G and W came from: "eq. 5", "measured", "tuned" or "explicit" (None: vanilla)
        "self_extend_origin": llm.self_extend_origin if se else None,
    }


@router.post("/props")
async def set_props():
    return error_response(501, "changing the server's properties is not supported (llama-server's --props)",
                          type_="not_supported_error")


def _slot(slot, n_ctx: int) -> Dict[str, Any]:
    """llama-server's fields of a slot that apply: params and next_token while it runs (of
    its generation: the limit, stop strings and n_probs)."""
    stats = slot.stats()
    out: Dict[str, Any] = {"id": stats["id"], "n_ctx": n_ctx, "speculative": False, "is_processing": stats["busy"]}
    if stats["last_prompt_tokens"]:
        out.update(n_prompt_tokens=stats["last_prompt_tokens"], n_prompt_tokens_processed=stats["last_evaluated"],
                   n_prompt_tokens_cache=stats["last_prompt_tokens"] - stats["last_evaluated"])
    job = slot.job
    if job is not None:
        gen = job.gen
        n_decoded, limit = len(gen.completion_tokens), gen.max_tokens
        out["params"] = {"n_predict": limit or -1, "stop": list(gen.stream.stop), "n_probs": gen.n_logprobs or 0}
        out["next_token"] = [{"has_next_token": True, "n_remain": limit - n_decoded if limit else -1,
                              "n_decoded": n_decoded}]
    return out


@router.get("/slots")
async def slots(fail_on_no_slot: Optional[str] = None, server: ServerContext = Depends(server_of)):
    n_ctx = server.llm.n_ctx()
    # read between two scheduler steps: the slots' jobs do not change meanwhile
    out = await on_scheduler_thread(server, lambda: [_slot(slot, n_ctx) for slot in server.scheduler.slots])
    if fail_on_no_slot and all(s["is_processing"] for s in out):
        return error_response(503, "no slot available", type_="unavailable_error")
    return out


@router.get("/metrics")
async def metrics(server: ServerContext = Depends(server_of)):
    if server.metrics is None:
        return error_response(501, "this server does not serve metrics: start it with --metrics",
                              type_="not_supported_error")
    return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4",
                             headers={"Process-Start-Time-Unix": str(server.metrics.t_start)})


@router.post("/slots/{id_slot}")
async def slot_action(id_slot: int, request: Request, action: str, server: ServerContext = Depends(server_of)):
    if server.slot_save_path is None and action in ("save", "restore"):
        return error_response(501, "slot save and restore are off: start the server with --slot-save-path DIR",
                              type_="not_supported_error")
    if action not in ("save", "restore", "erase"):
        return error_response(400, "action must be save, restore or erase", param="action")
    if not 0 <= id_slot < server.n_slots:
        return error_response(400, f"no slot {id_slot}: slots are 0..{server.n_slots - 1}", param="id_slot")
    try:
        body = await request.json() if action != "erase" else {}
    except ValueError:
        return error_response(400, "request body is not valid JSON")
    try:
        path = slot_files.path_of(server.slot_save_path, body.get("filename")) if action != "erase" else None
    except ValueError as err:
        return error_response(400, str(err), param="filename")
    try:
        return await on_scheduler_thread(
            server, lambda: slot_files.run_action(action, server.scheduler, id_slot, path))
    except Exception as err:  # noqa: BLE001 - a foreign or damaged file is the client's error
        return error_for(err)


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, server: ServerContext = Depends(server_of)):
    llm = server.llm
    try:
        tokens = llm.tokenize(body.content, add_bos=body.add_special, special=body.parse_special)
    except Exception as err:  # noqa: BLE001
        return error_for(err)
    if body.with_pieces:
        return {"tokens": [{"id": t, "piece": llm.token_bytes(t, True).decode("utf-8", errors="replace")}
                           for t in tokens]}
    return {"tokens": tokens}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, server: ServerContext = Depends(server_of)):
    try:
        text = server.llm.detokenize(body.tokens).decode("utf-8", errors="replace")
    except Exception as err:  # noqa: BLE001
        return error_for(err)
    return {"content": text}
