"""The one error tree of the gateway, and its one mapping to HTTP.

    VisionGateError                      500  (never raised for caller mistakes)
    ├── BadRequest                       400
    │   ├── EmptyBody
    │   ├── InvalidImage                 not an image, truncated, corrupt
    │   ├── InvalidArgument              a parameter out of range
    │   ├── WrongTask                    e.g. detect with a classifier
    │   └── ModelLoadFailed              an explicit load whose model is broken (the reason says why)
    ├── Unauthenticated                  401 + WWW-Authenticate  missing or unknown API key
    ├── Forbidden                        403  the key lacks the route's scope
    ├── UnsupportedMediaType             415
    ├── NotFound                         404
    │   ├── ModelNotFound
    │   └── RouteNotFound                no such path
    ├── MethodNotAllowed                 405
    ├── PayloadTooLarge                  413
    │   ├── BodyTooLarge
    │   ├── ImageTooLarge                pixel limit, checked from the header
    │   └── OutputTooLarge               super-resolution output pixel limit
    ├── RateLimited                      429 + Retry-After  the key's own rate limit (not overload)
    ├── BackendError                     502  the backend answered with an error
    │   └── NonFiniteOutput              NaN/Infinity where a number must be answered
    ├── ServiceUnavailable               503 + Retry-After
    │   ├── Overloaded                   admission queue full
    │   ├── BackendUnavailable           backend down or unreachable
    │   └── ModelNotReady
    ├── DeadlineExceeded                 504
    ├── ClientClosedRequest              499  the caller went away (counted, logged at INFO)
    └── InternalError                    500  a bug: the message never leaks internals

Every class carries ``status_code`` and a public ``message``. How an error is written depends on
the protocol of the route it happened on, decided once here (``protocol_of``):

- the task API (``/v1``, everything else): ``{"error": {"type", "message", ...details}}``
- the Open Inference Protocol (``/v2``): ``{"error": "<message>"}``, as KServe/Triton clients expect
- gRPC: a status code from ``GRPC_STATUS`` (by class, found along the MRO) and the message

4xx are logged at INFO without a traceback, 5xx with one (503/504 without).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("visiongate")


class VisionGateError(Exception):
    status_code = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def type(self) -> str:
        return type(self).__name__


class BadRequest(VisionGateError):
    status_code = 400


class EmptyBody(BadRequest):
    pass


class InvalidImage(BadRequest):
    pass


class InvalidArgument(BadRequest):
    pass


class WrongTask(BadRequest):
    pass


class Unauthenticated(VisionGateError):
    status_code = 401


class Forbidden(VisionGateError):
    status_code = 403


class RateLimited(VisionGateError):
    status_code = 429

    def __init__(self, message: str, retry_after_s: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s

    @property
    def retry_after(self) -> int:
        """Whole seconds for the Retry-After header, rounded up (at least 1)."""
        return max(1, int(self.retry_after_s) + (self.retry_after_s % 1 > 0))


class UnsupportedMediaType(VisionGateError):
    status_code = 415


class ModelLoadFailed(BadRequest):
    pass


class NotFound(VisionGateError):
    status_code = 404


class ModelNotFound(NotFound):
    pass


class RouteNotFound(NotFound):
    pass


class MethodNotAllowed(VisionGateError):
    status_code = 405


class PayloadTooLarge(VisionGateError):
    status_code = 413


class BodyTooLarge(PayloadTooLarge):
    pass


class ImageTooLarge(PayloadTooLarge):
    pass


class OutputTooLarge(PayloadTooLarge):
    pass


class BackendError(VisionGateError):
    status_code = 502


class NonFiniteOutput(BackendError):
    """The model answered NaN or infinity where a number must be given (a broken model)."""


class ServiceUnavailable(VisionGateError):
    status_code = 503

    def __init__(self, message: str, retry_after_s: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class Overloaded(ServiceUnavailable):
    pass


class BackendUnavailable(ServiceUnavailable):
    pass


class ModelNotReady(ServiceUnavailable):
    pass


class DeadlineExceeded(VisionGateError):
    status_code = 504


class ClientClosedRequest(VisionGateError):
    status_code = 499


class InternalError(VisionGateError):
    pass


#: gRPC status code names, as Triton uses them, per class (the nearest class along the MRO wins).
#: Every class of the tree has its own entry, so a new class must decide (tests/test_errors.py).
GRPC_STATUS: dict[type[VisionGateError], str] = {
    VisionGateError: "INTERNAL",
    BadRequest: "INVALID_ARGUMENT",
    EmptyBody: "INVALID_ARGUMENT",
    InvalidImage: "INVALID_ARGUMENT",
    InvalidArgument: "INVALID_ARGUMENT",
    WrongTask: "INVALID_ARGUMENT",
    ModelLoadFailed: "INVALID_ARGUMENT",
    UnsupportedMediaType: "INVALID_ARGUMENT",
    NotFound: "NOT_FOUND",
    ModelNotFound: "NOT_FOUND",
    RouteNotFound: "UNIMPLEMENTED",
    MethodNotAllowed: "UNIMPLEMENTED",
    PayloadTooLarge: "RESOURCE_EXHAUSTED",
    BodyTooLarge: "RESOURCE_EXHAUSTED",
    ImageTooLarge: "INVALID_ARGUMENT",
    OutputTooLarge: "INVALID_ARGUMENT",
    BackendError: "INTERNAL",
    NonFiniteOutput: "INTERNAL",
    ServiceUnavailable: "UNAVAILABLE",
    Overloaded: "UNAVAILABLE",
    BackendUnavailable: "UNAVAILABLE",
    ModelNotReady: "UNAVAILABLE",
    DeadlineExceeded: "DEADLINE_EXCEEDED",
    ClientClosedRequest: "CANCELLED",
    InternalError: "INTERNAL",
    Unauthenticated: "UNAUTHENTICATED",
    Forbidden: "PERMISSION_DENIED",
    RateLimited: "RESOURCE_EXHAUSTED",
}

Protocol = Literal["task", "oip"]


def protocol_of(path: str) -> Protocol:
    """Which error shape a path answers in: the OIP's on ``/v2``, the task API's elsewhere."""
    return "oip" if path == "/v2" or path.startswith("/v2/") else "task"


def grpc_status(exc: VisionGateError) -> str:
    for cls in type(exc).__mro__:
        if cls in GRPC_STATUS:
            return GRPC_STATUS[cls]
    return "INTERNAL"


def retry_after(exc: VisionGateError) -> int | None:
    """Whole seconds for a Retry-After header (``None`` when the error has none)."""
    if isinstance(exc, ServiceUnavailable):
        return max(1, round(exc.retry_after_s))
    return getattr(exc, "retry_after", None)


def error_body(exc: VisionGateError, protocol: Protocol = "task") -> dict[str, Any]:
    if protocol == "oip":
        return {"error": exc.message}
    return {"error": {"type": exc.type, "message": exc.message, **exc.details}}


def error_response(exc: VisionGateError, protocol: Protocol = "task",
                   headers: dict[str, str] | None = None) -> JSONResponse:
    extra = dict(headers or {})
    seconds = retry_after(exc)
    if seconds is not None:
        extra["Retry-After"] = str(seconds)
    return JSONResponse(error_body(exc, protocol), status_code=exc.status_code, headers=extra)


def log_error(method: str, path: str, exc: VisionGateError) -> None:
    """The one log line of an error answer: a bug with its traceback, 5xx at ERROR, the rest at INFO."""
    if isinstance(exc, InternalError) and exc.__cause__ is not None:
        logger.error("unhandled error on %s %s", method, path, exc_info=exc.__cause__)
    elif exc.status_code >= 500 and not isinstance(exc, (ServiceUnavailable, DeadlineExceeded)):
        logger.error("%s %s -> %s: %s", method, path, exc.status_code, exc.message,
                     exc_info=exc.__cause__ or exc if exc.status_code != 500 or exc.__cause__ else None)
    else:
        logger.info("%s %s -> %s: %s", method, path, exc.status_code, exc.message)


def as_visiongate_error(exc: BaseException) -> VisionGateError:
    """Any exception as a member of the tree (the one translation of foreign errors at the edge)."""
    if isinstance(exc, VisionGateError):
        return exc
    if isinstance(exc, RequestValidationError):
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                          for e in exc.errors())
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                    for e in exc.errors()]
        return InvalidArgument(f"request parameters are invalid: {where}", problems=problems)
    if isinstance(exc, StarletteHTTPException):
        cls: type[VisionGateError] = {404: RouteNotFound, 405: MethodNotAllowed, 413: BodyTooLarge}.get(
            exc.status_code, BadRequest if exc.status_code < 500 else InternalError)
        err = cls(str(exc.detail))
        err.status_code = exc.status_code
        return err
    if isinstance(exc, ClientDisconnect):
        return ClientClosedRequest("the client closed the connection before the answer")
    error = InternalError("internal error; see the server log")
    error.__cause__ = exc
    return error


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    error = as_visiongate_error(exc)
    if isinstance(error, RouteNotFound | MethodNotAllowed):
        error.message = f"{error.message}: {request.method} {request.url.path}"
    log_error(request.method, request.url.path, error)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and isinstance(error, (ServiceUnavailable, DeadlineExceeded)):
        metrics.rejected.labels(error.type).inc()
    headers = getattr(exc, "headers", None) if isinstance(exc, StarletteHTTPException) else None
    return error_response(error, protocol_of(request.url.path), headers)


class CatchAllMiddleware:
    """Answers an unexpected exception with the protocol's JSON 500 *without* re-raising it.

    Starlette's own last-resort handler re-raises after answering, and uvicorn then closes the
    keep-alive connection without ``Connection: close``: a pooled client's next request is reset.
    Installed innermost, this answers first and keeps the connection usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if started:
                raise
            error = as_visiongate_error(exc)
            log_error(str(scope.get("method")), str(scope.get("path")), error)
            await error_response(error, protocol_of(scope["path"]))(scope, receive, send)


def drop_validation_422(app: FastAPI) -> None:
    """FastAPI documents a 422 on every route with parameters; this gateway answers those with 400."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    """The one place errors become HTTP, in the shape of the route's protocol."""
    for cls in (VisionGateError, RequestValidationError, StarletteHTTPException, ClientDisconnect, Exception):
        app.add_exception_handler(cls, _handle)
    drop_validation_422(app)


#: OpenAPI ``responses=`` entry documenting the JSON error body on every endpoint
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            "required": ["type", "message"],
        }
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad input (not an image, bad parameter, wrong task for the model)",
        401: "No API key, or an unknown one (keys are required when configured); see WWW-Authenticate",
        403: "The API key lacks the scope this route needs",
        429: "The API key's own rate limit; see Retry-After",
        404: "Unknown model",
        413: "Body, image or output over a configured limit",
        415: "Unsupported content type",
        502: "The backend answered with an error",
        503: "Overloaded, backend down or model not ready; see Retry-After",
        504: "Request deadline exceeded",
    }
    return {
        c: {"description": descriptions[c], "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for c in codes
    }
