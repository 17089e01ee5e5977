"""The served app's outer layer on a real uvicorn server: JSON refusals, health exempt, and a
connection that survives a 500.

The app behind it is a small real Starlette app with routes made to fail or stall on purpose (no
route of the gateway should ever raise, so none can be used to show what happens when one does).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from support import free_port
from visiongate.service.connections import GuardedHttpToolsProtocol
from visiongate.service.edge import EdgeApp


async def always_fails(request: Request) -> JSONResponse:
    raise RuntimeError("a bug, on purpose")


async def slow(request: Request) -> JSONResponse:
    await asyncio.sleep(float(request.query_params.get("s", "1")))
    return JSONResponse({"slept": True})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": {"type": "InternalError", "message": "internal error"}}, status_code=500)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = Starlette(routes=[Route("/always-fails", always_fails), Route("/slow", slow),
                            Route("/healthz", healthz)],
                    exception_handlers={Exception: internal_error})
    port = free_port()
    config = uvicorn.Config(EdgeApp(app, max_requests=2), host="127.0.0.1", port=port, log_level="critical",
                            http=GuardedHttpToolsProtocol, loop="asyncio")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        threading.Event().wait(0.02)
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def exchange(sock: socket.socket, path: str) -> bytes:
    """Send one GET on a kept-alive socket, read one response (headers + content-length body)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head.lower() + b"\r\n\r\n" + body


def connect(address: str) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def test_a_complete_500_keeps_the_keep_alive_connection(server: str) -> None:
    with connect(server) as sock:
        failed = exchange(sock, "/always-fails")
        assert failed.startswith(b"http/1.1 500") and b"connection: close" not in failed
        assert b'"InternalError"' in failed
        # the next request on the same connection is answered (uvicorn alone closed it here)
        assert exchange(sock, "/healthz").startswith(b"http/1.1 200")


def test_past_the_request_cap_json_503_with_retry_after_and_health_still_answers(server: str) -> None:
    stalls = [connect(server) for _ in range(2)]
    try:
        for sock in stalls:
            sock.sendall(b"GET /slow?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        threading.Event().wait(0.3)
        with connect(server) as sock:
            refused = exchange(sock, "/slow?s=0")
        assert refused.startswith(b"http/1.1 503") and b"retry-after: 1" in refused
        assert b'"Overloaded"' in refused
        with connect(server) as sock:
            assert exchange(sock, "/healthz").startswith(b"http/1.1 200")
    finally:
        for sock in stalls:
            sock.close()
