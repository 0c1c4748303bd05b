"""llama-server's own endpoints: /health, /tokenize, /detokenize and the slot actions
(save, restore, erase: /slots/{id}?action=...)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from .. import slot_files
from ..bridge import on_scheduler_thread
from ..context import ServerContext, server_of
from ..errors import error_for, error_response
from ..schemas import DetokenizeRequest, TokenizeRequest

router = APIRouter()


@router.get("/health")
async def health(server: ServerContext = Depends(server_of)):
    slots = [slot.stats() for slot in server.scheduler.slots]
    return {"status": "ok", "slots_total": server.n_slots, "slots_idle": sum(not s["busy"] for s in slots),
            "queue": server.scheduler.n_waiting, "queue_max": server.max_queue, "slots": slots,
            "n_ctx": server.llm.n_ctx(), "memory": server.llm.memory_breakdown()}


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
