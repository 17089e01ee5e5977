"""The one error tree of the gateway, and its one mapping to HTTP.

    VisionGateError                      500  (never raised for caller mistakes)
    ├── BadRequest                       400
    │   ├── EmptyBody
    │   ├── InvalidImage                 not an image, truncated, corrupt
    │   ├── InvalidArgument              a parameter out of range
    │   └── WrongTask                    e.g. detect with a classifier
    ├── Unauthenticated                  401 + WWW-Authenticate  missing or unknown API key
    ├── Forbidden                        403  the key lacks the route's scope
    ├── UnsupportedMediaType             415
    ├── ModelNotFound                    404
    ├── PayloadTooLarge                  413
    │   ├── BodyTooLarge
    │   ├── ImageTooLarge                pixel limit, checked from the header
    │   └── OutputTooLarge               super-resolution output pixel limit
    ├── RateLimited                      429 + Retry-After  the key's own rate limit (not overload)
    ├── BackendError                     502  the backend answered with an error
    ├── ServiceUnavailable               503 + Retry-After
    │   ├── Overloaded                   admission queue full
    │   ├── BackendUnavailable           backend down or unreachable
    │   └── ModelNotReady
    └── DeadlineExceeded                 504

Every class carries ``status_code`` and a public ``message``; ``error_response`` turns any of them
into the JSON body ``{"error": {"type", "message", ...details}}``. 4xx are logged at INFO without a
traceback, 5xx with one.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


class UnsupportedMediaType(VisionGateError):
    status_code = 415


class ModelNotFound(VisionGateError):
    status_code = 404


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


def error_body(exc: VisionGateError) -> dict[str, Any]:
    return {"error": {"type": exc.type, "message": exc.message, **exc.details}}


def error_response(exc: VisionGateError) -> JSONResponse:
    headers = {}
    if isinstance(exc, ServiceUnavailable):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return JSONResponse(error_body(exc), status_code=exc.status_code, headers=headers)


async def _handle_visiongate(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VisionGateError)
    if isinstance(exc, (ServiceUnavailable, DeadlineExceeded)):
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.rejected.labels(exc.type).inc()
    if exc.status_code >= 500:
        logger.error("%s %s -> %s: %s", request.method, request.url.path, exc.status_code, exc.message,
                     exc_info=exc if exc.status_code not in (503, 504) else None)
    else:
        logger.info("%s %s -> %s: %s", request.method, request.url.path, exc.status_code, exc.message)
    return error_response(exc)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
        for e in exc.errors()
    ]
    return error_response(InvalidArgument("request parameters are invalid", problems=problems))


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = {"error": {"type": "HTTPError", "message": str(exc.detail)}}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {"error": {"type": "InternalError", "message": "internal error; see the server log"}}
    return JSONResponse(body, status_code=500)


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
    """The one place errors become HTTP. Starlette finds the handler by the exception's MRO."""
    app.add_exception_handler(VisionGateError, _handle_visiongate)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(Exception, _handle_unexpected)
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
