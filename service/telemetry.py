"""OpenTelemetry tracing, optional and free when off.

``with span("decode", images=n):`` around a stage records a child span of the request's when tracing
is on, and costs one context-variable read when it is off (no OpenTelemetry import at all). Tracing
is on when an OTLP endpoint is set (the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, OTLP over HTTP) or ``VISIONGATE_TRACING=on``; it needs the
``otel`` extra. A caller's W3C ``traceparent`` is continued, and ``inject(headers)`` carries the
context on to Triton (gRPC metadata or HTTP headers), even with tracing off (then passed through).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Self

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .settings import Settings

logger = logging.getLogger("visiongate")
TRACE_HEADERS = (b"traceparent", b"tracestate")


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but the ``otel`` extra is not installed."""


class _NoSpan:
    """What ``span()`` gives when tracing is off: a reusable context manager that records nothing."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: object) -> None:
        return None


NO_SPAN = _NoSpan()


@dataclass(frozen=True)
class Tracing:
    """A tracer and the provider that owns its exporter (``shutdown()`` flushes it)."""

    tracer: Any
    provider: Any

    def shutdown(self) -> None:
        self.provider.shutdown()


@dataclass(frozen=True)
class Captured:
    """A request's tracing context, to continue it on another thread (``span(..., parent=captured)``)."""

    tracer: Any
    context: Any


_tracer: ContextVar[Any] = ContextVar("visiongate_tracer", default=None)
_incoming: ContextVar[dict[str, str] | None] = ContextVar("visiongate_trace_headers", default=None)


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {f"visiongate.{k}": v for k, v in attributes.items() if v is not None}


def span(name: str, parent: Captured | None = None, **attributes: Any) -> AbstractContextManager[Any]:
    """A child span of the current request's (or of ``parent``), named ``name``; attributes are
    prefixed ``visiongate.``. A no-op when tracing is off."""
    if parent is not None:
        return parent.tracer.start_as_current_span(name, context=parent.context,  # type: ignore[no-any-return]
                                                   attributes=_attributes(attributes))
    tracer = _tracer.get()
    if tracer is None:
        return NO_SPAN
    return tracer.start_as_current_span(name, attributes=_attributes(attributes))  # type: ignore[no-any-return]


def span_since(name: str, started: float, parent: Captured | None = None, **attributes: Any) -> None:
    """Record a span that began at ``started`` (``time.monotonic()``) and ends now, e.g. a queue wait
    known only when the wait is over."""
    tracer = parent.tracer if parent is not None else _tracer.get()
    if tracer is None:
        return
    start_ns = time.time_ns() - int((time.monotonic() - started) * 1e9)
    context = parent.context if parent is not None else None
    tracer.start_span(name, context=context, start_time=start_ns, attributes=_attributes(attributes)).end()


def capture() -> Captured | None:
    """The current request's tracing context (None when tracing is off), for work on other threads."""
    tracer = _tracer.get()
    if tracer is None:
        return None
    from opentelemetry import context

    return Captured(tracer, context.get_current())


def inject(carrier: dict[str, str]) -> dict[str, str]:
    """Add ``traceparent``/``tracestate`` for the current span to ``carrier`` (outgoing headers or gRPC
    metadata); with tracing off, the caller's own headers are passed on unchanged."""
    if _tracer.get() is not None:
        from opentelemetry.propagate import inject as otel_inject

        otel_inject(carrier)
    else:
        carrier.update(_incoming.get() or {})
    return carrier


def remember_incoming(headers: list[tuple[bytes, bytes]]) -> object | None:
    """Keep the request's W3C trace headers for ``inject`` (tracing off); a reset token or None."""
    found = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in TRACE_HEADERS}
    return _incoming.set(found) if found else None


def forget_incoming(token: object | None) -> None:
    if token is not None:
        _incoming.reset(token)  # type: ignore[arg-type]


@contextmanager
def activated(tracing: Tracing | None) -> Iterator[None]:
    """Make ``tracing`` current outside a request (the batch scorer)."""
    token = _tracer.set(tracing.tracer if tracing else None)
    try:
        yield
    finally:
        _tracer.reset(token)


def traces_endpoint(settings: Settings) -> str:
    if settings.otlp_traces_endpoint:
        return settings.otlp_traces_endpoint
    return settings.otlp_endpoint.rstrip("/") + "/v1/traces" if settings.otlp_endpoint else ""


def build_tracing(settings: Settings) -> Tracing | None:
    """A tracer exporting over OTLP/HTTP when an endpoint is set; None when tracing is off."""
    endpoint = traces_endpoint(settings)
    if settings.tracing == "off" or (settings.tracing == "auto" and not endpoint):
        return None
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable("tracing needs the otel extra: pip install 'visiongate[otel]'") from None
    # the standard OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over these defaults
    resource = Resource.create({"service.name": "visiongate", "service.version": __version__}).merge(
        OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        logger.info("tracing: exporting spans over OTLP/HTTP to %s", endpoint)
    return Tracing(provider.get_tracer("visiongate", __version__), provider)


class TracingMiddleware:
    """One SERVER span per HTTP request, continuing the caller's ``traceparent``; stage spans made with
    ``span()`` inside the request become its children."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        from opentelemetry.trace import SpanKind, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.app = app
        self.tracer = tracing.tracer
        self.propagator = TraceContextTextMapPropagator()
        self.server_kind = SpanKind.SERVER
        self.error = StatusCode.ERROR

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in scope.get("headers", ()) if k in TRACE_HEADERS}
        method = scope["method"]
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = _tracer.set(self.tracer)
        try:
            with self.tracer.start_as_current_span(
                    method, context=self.propagator.extract(carrier), kind=self.server_kind,
                    attributes={"http.request.method": method, "url.path": scope["path"]}) as server_span:
                scope["visiongate.trace_id"] = format(server_span.get_span_context().trace_id, "032x")
                try:
                    await self.app(scope, receive, send_status)
                finally:
                    route = getattr(scope.get("route"), "path", None)
                    if route:
                        server_span.update_name(f"{method} {route}")
                        server_span.set_attribute("http.route", route)
                    server_span.set_attribute("http.response.status_code", status)
                    key = scope.get("visiongate.key")
                    if key:
                        server_span.set_attribute("visiongate.key", key)
                    if status >= 500:
                        server_span.set_status(self.error)
        finally:
            _tracer.reset(token)
