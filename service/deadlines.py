"""Per-request deadlines: a caller may ask for less than ``request_timeout_s`` with a header.

``X-Request-Timeout: 0.5`` (or ``Request-Timeout``; seconds, decimal) sets the request's deadline to
arrival + 0.5 s, never past the server's own ``request_timeout_s``. The deadline lives in a
context variable set by ``DeadlineMiddleware``; backends ask ``remaining_s()`` when they queue work,
so time spent reading and decoding counts, and a request that cannot be served in time is refused
at once (503) or cut at its deadline (504) instead of occupying the model.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import InvalidArgument, error_response, protocol_of

HEADERS = (b"x-request-timeout", b"request-timeout")
_SCOPE_KEY = "visiongate.deadline"
_deadline: ContextVar[float | None] = ContextVar("visiongate_deadline", default=None)
_arrived: ContextVar[float | None] = ContextVar("visiongate_arrived", default=None)


def parse_timeout(value: str) -> float:
    """Header value -> seconds (> 0, finite); ``InvalidArgument`` otherwise."""
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"X-Request-Timeout must be a positive number of seconds, got {value!r}")
    return seconds


def remaining_s(default_s: float) -> float:
    """Seconds left for the current request: its deadline if one was set, else ``default_s``."""
    deadline = _deadline.get()
    if deadline is None:
        return default_s
    return min(default_s, deadline - time.monotonic())


def waited_s() -> float:
    """Seconds since the current request reached the app (0 outside a request)."""
    arrived = _arrived.get()
    return 0.0 if arrived is None else time.monotonic() - arrived


class DeadlineMiddleware:
    """Sets the request's deadline from ``request_timeout_s`` and the caller's header (the shorter)."""

    def __init__(self, app: ASGIApp, default_s: float) -> None:
        self.app = app
        self.default_s = default_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _SCOPE_KEY in scope:  # idempotent when installed twice
            await self.app(scope, receive, send)
            return
        timeout = self.default_s
        for name, value in scope.get("headers", ()):
            if name in HEADERS:
                try:
                    timeout = min(timeout, parse_timeout(value.decode("latin-1")))
                except InvalidArgument as exc:
                    await error_response(exc, protocol_of(scope["path"]))(scope, receive, send)
                    return
        arrived = time.monotonic()
        deadline = arrived + timeout
        scope[_SCOPE_KEY] = deadline
        token, arrived_token = _deadline.set(deadline), _arrived.set(arrived)
        try:
            await self.app(scope, receive, send)
        finally:
            _deadline.reset(token)
            _arrived.reset(arrived_token)


@contextlib.contextmanager
def request_deadline(timeout_s: float) -> Iterator[None]:
    """What runs inside is one request arriving now, with this deadline (for transports that are not
    ASGI, such as gRPC, whose own deadline becomes the request's)."""
    arrived = time.monotonic()
    token, arrived_token = _deadline.set(arrived + timeout_s), _arrived.set(arrived)
    try:
        yield
    finally:
        _deadline.reset(token)
        _arrived.reset(arrived_token)
