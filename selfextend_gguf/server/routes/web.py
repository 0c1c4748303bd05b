"""The chat page: GET / and its files under /web/. The files ship inside the package
(selfextend_gguf/server/web/): no build step and nothing fetched from the network. They
are open without the API key (app.py) because the page asks the user for the key and
sends it on its own API calls."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from ..errors import error_response

router = APIRouter()

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ASSET_PREFIX = "/web/"

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

# The page runs only its own scripts and styles and talks only to this server: text that a
# model or a document slips into the page cannot run or load anything, even if rendering
# let it through.
_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _serve(name: str) -> Response:
    path = WEB_DIR / name
    media_type = _TYPES.get(path.suffix)
    # only the folder's own files by name: no subfolders, no other types
    if media_type is None or "/" in name or name.startswith(".") or not path.is_file():
        return error_response(404, f"no page file {name!r}", type_="not_found_error")
    # no-cache: a browser asks again (a cheap 200) and never runs an old page on a new server
    return Response(path.read_bytes(), media_type=media_type,
                    headers={"Cache-Control": "no-cache", "Content-Security-Policy": _POLICY,
                             "X-Content-Type-Options": "nosniff"})


@router.get("/", include_in_schema=False)
async def page():
    return _serve("index.html")


@router.get(ASSET_PREFIX + "{name}", include_in_schema=False)
async def asset(name: str):
    return _serve(name)
