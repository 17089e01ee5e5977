"""Who may call what: the key check (``Gate``) and the ASGI middleware that applies it before any work.

The middleware runs before admission and before the body is read, so a flood of requests without a
valid key costs a header lookup and a hash each. Refusals use the body shape of the API they were
sent to: ``{"error": "<message>"}`` under ``/v2`` (the Open Inference Protocol), the task API's
``{"error": {"type", "message"}}`` elsewhere. The key itself is never logged or echoed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import Forbidden, RateLimited, Unauthenticated, VisionGateError, error_response, protocol_of
from ..metrics import Metrics
from ..middleware import discard_body
from . import ratelimit
from .keys import KeyStore
from .ratelimit import KeyLimits, RateLimiter, RequestQuota, retry_after_header
from .scopes import METRICS, OPEN, scope_for

#: the ASGI scope entry naming the key a request was made with (read by the request log)
KEY_NAME = "visiongate.key"
_MAX_KEY_CHARS = 256
_REALM = 'Bearer realm="visiongate"'


def key_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key sent as ``Authorization: Bearer <key>`` (preferred) or ``X-API-Key: <key>``."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif name == b"x-api-key" and value.strip():
            api_key = value.decode("latin-1").strip()
    return api_key


def key_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The key in gRPC invocation metadata (the same two names, lower-case as gRPC sends them)."""
    return key_from_headers([(k.lower().encode("latin-1"), v if isinstance(v, bytes) else v.encode("latin-1"))
                             for k, v in metadata])


@dataclass
class Gate:
    """The policy: keys from ``store``; ``require_keys`` even when it is empty (set at start from the
    bind address and the ``auth`` setting); ``/metrics`` open or not."""

    store: KeyStore
    require_keys: bool
    metrics_open: bool = False
    limiter: RateLimiter | None = None
    metrics: Metrics | None = None

    def __post_init__(self) -> None:
        self.limiter = self.limiter or RateLimiter()

    def enforced(self) -> bool:
        return self.require_keys or bool(self.store.entries())

    def needs_key(self, scope: str) -> bool:
        return scope != OPEN and not (scope == METRICS and self.metrics_open) and self.enforced()

    def check(self, key: str | None, scope: str) -> KeyLimits:
        """The limits of the key allowed ``scope`` (one request charged); raises ``Unauthenticated`` (401),
        ``Forbidden`` (403) or ``RateLimited`` (429). Also for gRPC metadata (same names, same rules)."""
        if not key:
            self._failure("missing")
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>' or "
                                  "'X-API-Key: <key>'")
        entry = self.store.lookup(key) if len(key) <= _MAX_KEY_CHARS else None
        if entry is None:
            self._failure("unknown")
            raise Unauthenticated("the API key is not valid (unknown or revoked)")
        if scope not in entry.scopes:
            self._count(entry.name, "forbidden")
            raise Forbidden(f"key {entry.name!r} lacks the {scope!r} scope this route needs", scope=scope)
        assert self.limiter is not None
        limits = self.limiter.limits(entry)
        try:
            limits.charge_request()
        except RateLimited:
            self._count(entry.name, "rate_limited_requests")
            raise
        self._count(entry.name, "allowed")
        return limits

    def _failure(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_auth_failure(reason)

    def _count(self, key: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_key(key, outcome)


def refusal_headers(exc: VisionGateError) -> dict[str, str]:
    if isinstance(exc, Unauthenticated):
        invalid = "not valid" in exc.message
        return {"WWW-Authenticate": _REALM + (', error="invalid_token"' if invalid else "")}
    if isinstance(exc, Forbidden):
        scope = exc.details.get("scope", "")
        return {"WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{scope}"'}
    if isinstance(exc, RateLimited):
        return {"Retry-After": retry_after_header(exc.retry_after_s)}
    return {}


def refusal_response(path: str, exc: VisionGateError) -> JSONResponse:
    return error_response(exc, protocol_of(path), refusal_headers(exc))


class AuthMiddleware:
    """Refuses requests without a key allowed the route's scope (``scopes.RULES``), and over the key's
    request rate; binds the key's limits for ``ratelimit.charge_images``."""

    def __init__(self, app: ASGIApp, gate: Gate, drain_limit: int = 20 * 2**20) -> None:
        self.app = app
        self.gate = gate
        self.drain_limit = drain_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        required = scope_for(scope["method"], scope["path"])
        if not self.gate.needs_key(required):
            await self.app(scope, receive, send)
            return
        try:
            limits = self.gate.check(key_from_headers(scope.get("headers", [])), required)
        except VisionGateError as exc:
            if isinstance(exc, RateLimited):
                # a known caller over its rate: keep its keep-alive connection usable (see discard_body)
                await discard_body(receive, self.drain_limit)
            await refusal_response(scope["path"], exc)(scope, receive, send)
            return
        scope[KEY_NAME] = limits.entry.name
        quota = RequestQuota(limits)
        token = ratelimit.bind(quota)

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 429 and quota.refusal:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"retry-after"]
                headers.append((b"retry-after", retry_after_header(quota.refusal.retry_after_s).encode()))
                message = {**message, "headers": headers}
                self.gate._count(limits.entry.name, "rate_limited_images")
            await send(message)

        try:
            await self.app(scope, receive, send_with_retry_after)
        finally:
            ratelimit.unbind(token)
