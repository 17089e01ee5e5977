"""The web playground: static HTML/JS/CSS from ``service/static`` at ``/ui``; ``/`` redirects there.

No build step and nothing fetched from elsewhere: the page talks to ``/v1/models`` and the task endpoints.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

from .docs import SECURITY_HEADERS

STATIC = Path(__file__).resolve().parent.parent / "static"
#: the only files served, with their media types (no directory listing, no path traversal)
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
#: the security headers every page the gateway serves carries (the playground keeps its own CSP)
HEADERS = {k: v for k, v in SECURITY_HEADERS.items() if k != "Content-Security-Policy"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
async def playground() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={
        **HEADERS,
        "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                                   "script-src 'self'; object-src 'none'; frame-ancestors 'none'",
    })


@router.get("/ui/{asset}")
async def asset(asset: str) -> FileResponse:
    if asset not in ASSETS:
        raise HTTPException(404, f"no playground file {asset!r}")
    return FileResponse(STATIC / asset, media_type=ASSETS[asset], headers=HEADERS)
