"""``install_security(app, settings)``: keys, docs, request logs and tracing, wired into one app.

Middleware order, outermost first, whatever the order of the calls (positions are taken relative to
``MetricsMiddleware``; CORS, when added, stays outermost)::

    [CORS] -> RequestLog -> Tracing -> Metrics -> Auth -> Admission -> Deadline -> routes

The request log and the trace see every answer, refusals included; metrics count 401/403/429 per
route; auth refuses before admission, so requests without a valid key never take an admission slot
or have their body read.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware

from ..api.docs import install_docs
from ..errors import ERROR_SCHEMA
from ..request_log import RequestLogMiddleware
from ..settings import Settings
from ..telemetry import Tracing, TracingMiddleware, build_tracing
from .auth import AuthMiddleware, Gate
from .keys import KeyStore, KeyStoreError, parse_entries
from .scopes import INFER, OPEN, _example_path, scope_for

logger = logging.getLogger("visiongate.security")


class AuthNotConfigured(RuntimeError):
    """The server would be reachable beyond this host with no key able to use it (message says what to do)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_gate(settings: Settings, metrics: Any = None) -> Gate | None:
    """The key check for these settings; None when auth is off. Raises ``AuthNotConfigured`` when the
    server would listen beyond loopback without keys (unless ``VISIONGATE_AUTH=off``)."""
    if settings.auth == "off":
        if not is_loopback(settings.host):
            logger.warning("VISIONGATE_AUTH=off: anyone who can reach %s:%s may use every endpoint",
                           settings.host, settings.port)
        return None
    try:
        store = KeyStore(settings.api_keys_file, parse_entries(settings.api_keys, "VISIONGATE_API_KEYS"))
    except KeyStoreError as exc:
        raise AuthNotConfigured(f"visiongate: {exc}") from None
    # a client certificate signed by tls_client_ca already proves who calls
    trusted_peers = is_loopback(settings.host) or settings.tls_client_ca is not None
    require = settings.auth == "on" or not trusted_peers
    if require and not store.entries():
        if settings.auth == "auto":
            raise AuthNotConfigured(
                f"visiongate: refusing to serve on {settings.host}:{settings.port} without API keys: anyone "
                "who can reach it could use every model.\n"
                "  create a key:  visiongate keys create NAME --scopes infer,read   (prints the key once; "
                f"stores its hash in {settings.api_keys_file}, or set VISIONGATE_API_KEYS_FILE)\n"
                "  or listen on 127.0.0.1 only, or opt out explicitly with VISIONGATE_AUTH=off")
        logger.warning("VISIONGATE_AUTH=on with no keys in %s: every request that needs a key is refused "
                       "until one is added", settings.api_keys_file)
    return Gate(store, require_keys=require, metrics_open=settings.metrics_open, metrics=metrics)


def _insert_around_metrics(app: FastAPI, outside: list[Middleware], inside: list[Middleware]) -> None:
    if getattr(app, "middleware_stack", None) is not None:
        raise RuntimeError("install_security must be called before the app starts")
    stack = app.user_middleware  # outermost first
    names = [getattr(m.cls, "__name__", "") for m in stack]
    if "MetricsMiddleware" in names:
        at = names.index("MetricsMiddleware")
        stack[at + 1:at + 1] = inside
        stack[at:at] = outside
    else:
        at = names.index("AdmissionMiddleware") if "AdmissionMiddleware" in names else len(stack)
        stack[at:at] = [*outside, *inside]


def _document_security(app: FastAPI) -> None:
    """Declare the two ways to send a key in the OpenAPI document, and which operations need one."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = generate()
        if first:
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update({
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key from "
                           "`visiongate keys create` (needed unless the server is open on loopback)"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}})
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    scope = scope_for(method.upper(), _example_path(path))
                    if scope == OPEN:
                        continue
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                    operation.setdefault("description", "")
                    operation["description"] = (operation["description"] + f"\n\nNeeds an API key with the "
                                                f"`{scope}` scope when keys are in use.").strip()
                    responses = operation.setdefault("responses", {})
                    oip = path.startswith("/v2")
                    content = {"application/json": {"schema": {"type": "object", "properties": {
                        "error": {"type": "string"}}} if oip else ERROR_SCHEMA}}
                    responses.setdefault("401", {"description": "Missing or unknown API key",
                                                 "content": content})
                    responses.setdefault("403", {"description": f"The key lacks the {scope} scope",
                                                 "content": content})
                    if scope == INFER:
                        responses.setdefault("429", {"description": "The key's rate limit; see Retry-After",
                                                     "content": content})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _close_tracing_on_shutdown(app: FastAPI, tracing: Tracing) -> None:
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        try:
            async with inner(a) as state:
                yield state
        finally:
            tracing.shutdown()  # flushes spans still queued for the exporter

    app.router.lifespan_context = lifespan


def install_security(app: FastAPI, settings: Settings) -> None:
    """Keys and scopes, per-key rate limits, offline docs, request logs and tracing for ``app``.
    Call once in ``create_app``, after the other middleware is added. Raises ``AuthNotConfigured``."""
    gate = build_gate(settings, getattr(app.state, "metrics", None))
    tracing = build_tracing(settings)
    install_docs(app, settings.docs_enabled)
    _document_security(app)
    outside = [Middleware(RequestLogMiddleware, enabled=settings.request_log)]
    if tracing is not None:
        outside.append(Middleware(TracingMiddleware, tracing=tracing))
        _close_tracing_on_shutdown(app, tracing)
    inside = [Middleware(AuthMiddleware, gate=gate, drain_limit=settings.max_body_bytes)] if gate else []
    _insert_around_metrics(app, outside, inside)
    app.state.gate = gate
    app.state.tracing = tracing
    if gate is None:
        logger.info("auth: off (VISIONGATE_AUTH=off)")
    elif gate.enforced():
        logger.info("auth: API key required (%d keys; store %s)", len(gate.store.entries()),
                    settings.api_keys_file)
    else:
        logger.info("auth: open on loopback %s until keys are added to %s", settings.host,
                    settings.api_keys_file)
