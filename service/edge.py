"""The outermost ASGI layer of a served gateway: what the HTTP server would otherwise answer itself.

uvicorn answers a few things without the app, all of them in plain text and some badly:

* over its concurrency cap, a bare ``503 Service Unavailable`` without ``Retry-After``, for health
  probes too. Here the cap counts requests in flight (not connections, which ``connections.py``
  bounds), refuses with the gateway's JSON ``Overloaded`` + ``Retry-After``, and never refuses
  ``/healthz`` or ``/readyz``;
* a request still running when the drain timeout ends is cancelled and got a plain-text 500. Here
  it gets a JSON 503 + ``Retry-After`` (another instance can take it) and the connection closes;
* after any unhandled exception uvicorn closes the connection, even when the app has already sent
  its complete JSON 500: Starlette's ``ServerErrorMiddleware`` re-raises after answering, by
  design, so that servers can log. A pooled keep-alive client then had its next request reset
  on a connection that had said nothing about closing. A complete answer keeps its connection here.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .connections import OVER_CAP
from .errors import InternalError, Overloaded, ServiceUnavailable, VisionGateError, error_response

logger = logging.getLogger("visiongate")

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


class EdgeApp:
    """Wraps the app for the server: ``max_requests`` in flight (None: no cap), health exempt."""

    def __init__(self, app: ASGIApp, max_requests: int | None = None) -> None:
        self.app = app
        self.max_requests = max_requests
        self.open = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in HEALTH_PATHS:
            refusal = None
            if scope.get(OVER_CAP):
                refusal = Overloaded("too many connections are open; retry later", retry_after_s=1)
            elif self.max_requests is not None and self.open >= self.max_requests:
                refusal = Overloaded(f"{self.open} requests are being served; retry later", retry_after_s=1)
            if refusal is not None:
                await _answer(refusal, scope, receive, send, close=True)
                return
        started = complete = False

        async def tracked(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        self.open += 1
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:  # the server gave up on it: the drain timeout passed
            if started:
                raise
            await _answer(ServiceUnavailable("the gateway is shutting down and could not finish this "
                                             "request in time; retry it", retry_after_s=1),
                          scope, receive, send, close=True)
        except Exception:
            if complete:  # answered (and logged) by the app's error handler: keep the connection
                return
            if started:
                raise  # half an answer: only closing the connection can tell the client
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await _answer(InternalError("internal error; see the server log"), scope, receive, send)
        finally:
            self.open -= 1


async def _answer(exc: VisionGateError, scope: Scope, receive: Receive, send: Send, close: bool = False) -> None:
    response = error_response(exc)
    if close:
        response.headers["connection"] = "close"
    await response(scope, receive, send)
