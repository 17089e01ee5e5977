"""API docs that work offline: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served by the gateway.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN (blank on an air-gapped network) and
start them with inline scripts (no strict content-security policy possible). Here the assets come from
the ``fastapi-offline`` package (Swagger UI bundle and CSS, ReDoc standalone, a favicon), the start-up
scripts are files of ``service/static``, and every page and asset carries a CSP and the usual
security headers. Swagger UI's "Try it out" sends the key the playground keeps in this tab's
``sessionStorage`` (or one entered with "Authorize").
"""

from __future__ import annotations

import html
import importlib.util
from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute

STATIC = Path(__file__).resolve().parent.parent / "static"

#: ReDoc starts a web worker from a blob: URL and both UIs set inline styles; nothing else is loosened
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'; object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-cache",
}
#: name -> (folder key, media type); the only files served (no directory listing, no traversal)
ASSETS = {
    "swagger-ui-bundle.js": ("vendor", "text/javascript"),
    "swagger-ui.css": ("vendor", "text/css"),
    "redoc.standalone.js": ("vendor", "text/javascript"),
    "favicon.png": ("vendor", "image/png"),
    "swagger-init.js": ("own", "text/javascript"),
    "redoc-init.js": ("own", "text/javascript"),
}


#: ReDoc's sidebar always shows Redocly's logo from their CDN (no option turns it off); served with an
#: empty inline image instead, so the page makes no request off the gateway (the CSP would block it anyway)
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@cache
def _redoc_offline(path: Path) -> bytes:
    return path.read_bytes().replace(_REDOC_LOGO, _EMPTY_IMAGE)


def vendor_dir() -> Path | None:
    """The asset folder of the installed ``fastapi-offline`` package (found without importing it)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if folder.is_dir() else None


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" type="image/png" href="{root}/docs/assets/favicon.png">
  {css}
  <script src="{root}/docs/assets/{bundle}" defer></script>
  <script src="{root}/docs/assets/{init}" defer></script>
</head>
<body data-openapi="{openapi}">
  <div id="{element}"></div>
</body>
</html>
"""


def _page(request: Request, title: str, element: str, bundle: str, init: str, css: str = "") -> HTMLResponse:
    root = html.escape(request.scope.get("root_path", ""), quote=True)
    openapi = html.escape(root + (request.app.openapi_url or "/openapi.json"), quote=True)
    stylesheet = f'<link rel="stylesheet" href="{root}/docs/assets/{css}">' if css else ""
    body = _PAGE.format(title=html.escape(title), root=root, css=stylesheet, bundle=bundle, init=init,
                        openapi=openapi, element=element)
    return HTMLResponse(body, headers=SECURITY_HEADERS)


router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, f"{request.app.title} API - Swagger UI", "swagger-ui", "swagger-ui-bundle.js",
                 "swagger-init.js", css="swagger-ui.css")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _page(request, f"{request.app.title} API - ReDoc", "redoc", "redoc.standalone.js", "redoc-init.js")


@router.get("/docs/assets/{name}")
async def asset(name: str) -> Response:
    where = ASSETS.get(name)
    folder = (vendor_dir() if where[0] == "vendor" else STATIC) if where else None
    if where is None or folder is None:
        raise HTTPException(404, f"no docs asset {name!r}" if where is None else
                            "the docs assets are not installed (pip install fastapi-offline)")
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"}
    if name == "redoc.standalone.js":
        return Response(_redoc_offline(folder / name), media_type=where[1], headers=headers)
    return FileResponse(folder / name, media_type=where[1], headers=headers)


@router.get("/favicon.ico")
async def favicon() -> Response:
    return await asset("favicon.png")


def install_docs(app: FastAPI, enabled: bool = True) -> None:
    """Replace FastAPI's CDN-based /docs and /redoc with these; ``enabled=False`` also drops
    /openapi.json (no docs surface at all)."""
    replaced = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    if not enabled:
        replaced.add(app.openapi_url)
    kept: list[BaseRoute] = [r for r in app.router.routes if getattr(r, "path", None) not in replaced]
    app.router.routes[:] = kept
    if enabled:
        app.include_router(router)
