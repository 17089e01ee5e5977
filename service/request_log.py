"""Structured request logs: one line per request, an ``X-Request-ID`` on every answer, JSON or text.

Each request gets an id (the caller's ``X-Request-ID`` when it is a plain token of at most 128
characters, else a new one), echoed on the response. When it ends, one line goes to the
``visiongate.request`` logger with: time, request id, key name, method, route template, status, model,
version, images, queue/infer/total milliseconds, trace id. The service fills in what only it knows
with ``note(model=..., images=..., queue_ms=..., infer_ms=...)``; the batch scorer writes the same line
with ``log_request(...)``. Never logged: image bytes, query strings, headers, keys.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import telemetry
from .settings import Settings

logger = logging.getLogger("visiongate.request")
_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
#: probes and scrapes: logged at DEBUG so they do not drown the requests
_QUIET = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


@dataclass
class RequestRecord:
    request_id: str
    method: str = ""
    route: str = ""
    status: int = 0
    key: str | None = None
    model: str | None = None
    version: str | None = None
    images: int | None = None
    queue_ms: float | None = None
    infer_ms: float | None = None
    total_ms: float | None = None
    trace_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _FIELDS}
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}


_FIELDS = tuple(f.name for f in fields(RequestRecord) if f.name != "extra")
_record: ContextVar[RequestRecord | None] = ContextVar("visiongate_request_record", default=None)


def note(**fields: Any) -> None:
    """Add what the service knows to the current request's log line (no-op outside a request):
    model, version, images, queue_ms, infer_ms, or any other plain value."""
    record = _record.get()
    if record is None:
        return
    for name, value in fields.items():
        if name in RequestRecord.__dataclass_fields__ and name != "extra":
            setattr(record, name, value)
        else:
            record.extra[name] = value


def unnoted() -> None:
    """From here on, the current task's notes leave the request's line alone (a side run in a task of
    its own, such as a presence gate's detector, must not overwrite the model that answered)."""
    _record.set(None)


def current_request_id() -> str | None:
    record = _record.get()
    return record.request_id if record else None


def log_request(route: str, status: int | str, **fields: Any) -> None:
    """One request-shaped line outside HTTP (the batch scorer: route="score", status="ok"/"error")."""
    record = RequestRecord(request_id=fields.pop("request_id", None) or os.urandom(16).hex(), route=route)
    note_into(record, fields)
    logger.info("%s %s", route, status, extra={"fields": {**record.fields(), "status": status}})


def note_into(record: RequestRecord, fields: dict[str, Any]) -> None:
    token = _record.set(record)
    try:
        note(**fields)
    finally:
        _record.reset(token)


def _trace_id(traceparent: str | None) -> str | None:
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


class RequestLogMiddleware:
    """Assigns the request id, echoes it, and logs the request's line when it ends."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope.get("headers", [])
        given = traceparent = None
        for name, value in headers:
            if name == b"x-request-id":
                given = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        request_id = given if given and _ID.match(given) else os.urandom(16).hex()
        record = RequestRecord(request_id=request_id, method=scope["method"], trace_id=_trace_id(traceparent))
        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
                for name, value in message["headers"]:
                    if name == b"x-model" and record.model is None:
                        record.model = value.decode("latin-1")
                    elif name == b"x-model-version" and record.version is None:
                        record.version = value.decode("latin-1")
            await send(message)

        token = _record.set(record)
        trace_token = telemetry.remember_incoming(headers)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _record.reset(token)
            telemetry.forget_incoming(trace_token)
            if self.enabled:
                self._log(scope, record, started)

    def _log(self, scope: Scope, record: RequestRecord, started: float) -> None:
        record.total_ms = round((time.perf_counter() - started) * 1000, 2)
        record.route = getattr(scope.get("route"), "path", None) or "unmatched"
        record.key = scope.get("visiongate.key")
        record.trace_id = scope.get("visiongate.trace_id") or record.trace_id
        if record.model is None and record.status < 400:
            record.model = _model_named_by(scope)
        level = logging.DEBUG if scope["path"] in _QUIET and record.status < 400 else logging.INFO
        if logger.isEnabledFor(level):
            # made directly: logger.log() would walk the stack for a caller this line does not show
            line = logger.makeRecord(logger.name, level, "", 0, "%s %s %s %.1f ms",
                                     (record.method, record.route, record.status, record.total_ms), None,
                                     extra={"fields": record.fields()})
            logger.handle(line)


def _model_named_by(scope: Scope) -> str | None:
    """The model an inference request was for: named in its path or query, else its task's default
    (as admission names it, from the app's own routes)."""
    state = getattr(scope.get("app"), "state", None)
    service = getattr(state, "service", None)
    table = getattr(state, "inference_routes", None)
    if service is None or table is None:
        return None
    target = table.target(scope)
    if target is None or target.model is not None or target.task is None:
        return None if target is None else target.model
    try:
        return str(service.default_model(target.task))
    except Exception:  # the request already failed or succeeded; the log line just lacks the name
        return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The usual text line, with a request's fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items()
                                   if k not in {"method", "route", "status", "total_ms"})
        return line


def configure_logging(settings: Settings) -> None:
    """The root handler: level and format from the settings (replaces ``logging.basicConfig``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
