"""Python clients for the gateway's task API: ``Client`` (blocking) and ``AsyncClient`` (asyncio), on httpx.

    from visiongate.service.client import Client
    with Client("http://127.0.0.1:8080") as vg:
        result = vg.classify("cat.jpg", top_k=3)       # ClassifyResult
        print(result.predictions[0].label)
        boxes = vg.detect(open("street.jpg", "rb").read())
        big = vg.super_resolve("small.png")            # SuperResolved: PNG bytes + sizes

An image is bytes, a path (``str``/``Path``), or an ``http(s)://`` URL string (the gateway fetches
it, where its allowlist permits). A list of images gives a list of results, in order.

A 503 (overloaded, model loading) is retried up to ``max_retries`` times, waiting what the
``Retry-After`` header asks, capped at ``max_retry_wait_s``. Every other error answer raises a
``GatewayError`` subclass carrying ``status``, ``type`` and ``message`` from the gateway's JSON error.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
from pydantic import BaseModel

from .schemas import ClassifyResult, DetectResult, ModelInfo, ModelList
from .vision.formats import media_type

__all__ = [
    "AsyncClient", "BadRequestError", "Client", "ClientConnectionError", "GatewayError", "NotFoundError",
    "PayloadTooLargeError", "ServerError", "SuperResolved", "UnavailableError", "UnsupportedMediaTypeError",
]

Image = bytes | str | Path
M = TypeVar("M", bound=BaseModel)
RETRY_STATUSES = (429, 503)


# --- errors --------------------------------------------------------------------------------------

class GatewayError(Exception):
    """The gateway answered with an error. ``type`` is the gateway's error class (e.g. ``InvalidImage``)."""

    def __init__(self, status: int | None, type_: str, message: str, body: Any = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{status} {type_}: {message}" if status else f"{type_}: {message}")
        self.status = status
        self.type = type_
        self.message = message
        self.body = body
        self.retry_after_s = retry_after_s


class ClientConnectionError(GatewayError):
    """No answer: connection refused, reset, or the client's timeout."""


class BadRequestError(GatewayError):
    """400: not an image, a bad parameter, a model that does another task."""


class NotFoundError(GatewayError):
    """404: unknown model or version."""


class PayloadTooLargeError(GatewayError):
    """413: body, image or output over a gateway limit."""


class UnsupportedMediaTypeError(GatewayError):
    """415."""


class ServerError(GatewayError):
    """5xx."""


class UnavailableError(ServerError):
    """503 after the retries ran out (overloaded, backend down, model not ready)."""


_BY_STATUS: dict[int, type[GatewayError]] = {
    400: BadRequestError, 404: NotFoundError, 413: PayloadTooLargeError, 415: UnsupportedMediaTypeError,
    422: BadRequestError, 429: UnavailableError, 503: UnavailableError,
}


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    if value.strip().replace(".", "", 1).isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from(response: httpx.Response) -> GatewayError:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        type_, message = str(err.get("type", "Error")), str(err.get("message", ""))
    elif isinstance(err, str):  # the v2 protocol's shape
        type_, message = "Error", err
    else:
        type_, message = "HTTPError", str(body)[:500]
    cls = _BY_STATUS.get(response.status_code, ServerError if response.status_code >= 500 else GatewayError)
    return cls(response.status_code, type_, message, body, retry_after_s(response))


# --- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SuperResolved:
    """An upscaled image as the gateway encoded it. Sizes are (width, height) in pixels."""

    image: bytes
    media_type: str
    scale: int
    model: str
    version: int | None
    input_size: tuple[int, int]
    output_size: tuple[int, int]


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return (int(w), int(h)) if w.isdigit() and h.isdigit() else (0, 0)


def super_resolved(response: httpx.Response) -> SuperResolved:
    h = response.headers
    version = h.get("x-model-version", "")
    return SuperResolved(
        image=response.content, media_type=h.get("content-type", "").split(";")[0],
        scale=int(h.get("x-scale", "0") or 0), model=h.get("x-model", ""),
        version=int(version) if version.isdigit() else None,
        input_size=_size(h.get("x-input-size", "")), output_size=_size(h.get("x-output-size", "")),
    )


# --- requests (shared by both clients) --------------------------------------------------------------

def _is_url(image: Image) -> bool:
    return isinstance(image, str) and image.startswith(("http://", "https://"))


def _read(image: Image) -> bytes:
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    return Path(image).read_bytes()


def image_request(images: Image | Sequence[Image]) -> tuple[dict[str, Any], bool]:
    """httpx request keyword arguments for one image or a list, and whether a list was given."""
    many = isinstance(images, list | tuple)
    # a str is a Sequence too: only lists and tuples are "several images"
    items: list[Image] = list(images) if isinstance(images, list | tuple) else [cast(Image, images)]
    if not items:
        raise ValueError("no images given")
    if any(_is_url(i) for i in items):
        if not all(_is_url(i) for i in items):
            raise ValueError("send either URLs or image bytes/paths in one request, not both")
        return {"json": {"urls": items} if many else {"url": items[0]}}, many
    blobs = [_read(i) for i in items]
    if not many:
        return {"content": blobs[0], "headers": {"content-type": media_type(blobs[0])}}, False
    files = [("file", (f"image{i}", b, media_type(b))) for i, b in enumerate(blobs)]
    return {"files": files}, True


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _results(response: httpx.Response, model: type[M], many: bool) -> M | list[M]:
    data = response.json()
    if isinstance(data, list):
        return [model.model_validate(d) for d in data]
    one = model.model_validate(data)
    return [one] if many else one


class _Base:
    def __init__(self, base_url: str, max_retries: int, max_retry_wait_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s

    def _wait_s(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None to give up."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        asked = retry_after_s(response)
        return min(asked if asked is not None else 0.5 * 2 ** attempt, self.max_retry_wait_s)


# --- the clients -----------------------------------------------------------------------------------

class Client(_Base):
    """Blocking client. Use as a context manager, or call ``close()``."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, timeout_s: float = 60.0,
                 max_retries: int = 3, max_retry_wait_s: float = 10.0, headers: dict[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, max_retries, max_retry_wait_s)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call with the 503 retries; raises ``GatewayError`` for any error answer."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise ClientConnectionError(None, type(exc).__name__, str(exc) or repr(exc)) from exc
            wait = self._wait_s(response, attempt)
            if wait is None:
                break
            attempt += 1
            time.sleep(wait)
        if response.status_code >= 400:
            raise error_from(response)
        return response

    def classify(self, image: Image | Sequence[Image], *, model: str | None = None, top_k: int = 5,
                 version: int | None = None) -> ClassifyResult | list[ClassifyResult]:
        kwargs, many = image_request(image)
        r = self.request("POST", "/v1/classify", params=_params(model=model, top_k=top_k, version=version),
                         **kwargs)
        return _results(r, ClassifyResult, many)

    def detect(self, image: Image | Sequence[Image], *, model: str | None = None, version: int | None = None,
               score_threshold: float | None = None, iou_threshold: float | None = None,
               max_detections: int | None = None, classes: Sequence[str] | None = None,
               box_format: str | None = None) -> DetectResult | list[DetectResult]:
        kwargs, many = image_request(image)
        params = _params(model=model, version=version, score_threshold=score_threshold,
                         iou_threshold=iou_threshold, max_detections=max_detections,
                         classes=",".join(classes) if classes else None, format=box_format)
        return _results(self.request("POST", "/v1/detect", params=params, **kwargs), DetectResult, many)

    def super_resolve(self, image: Image, *, model: str | None = None, version: int | None = None,
                      image_format: str | None = None, quality: int | None = None) -> SuperResolved:
        kwargs, _ = image_request(image)
        params = _params(model=model, version=version, format=image_format, quality=quality)
        return super_resolved(self.request("POST", "/v1/super-resolve", params=params, **kwargs))

    def models(self) -> list[ModelInfo]:
        return ModelList.model_validate(self.request("GET", "/v1/models").json()).models

    def model(self, name: str) -> ModelInfo:
        return ModelInfo.model_validate(self.request("GET", f"/v1/models/{name}").json())

    def ready(self) -> bool:
        """True when the gateway reports ready (no retries, no exception for 503)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False


class AsyncClient(_Base):
    """The same API as ``Client``, awaitable. Use ``async with``, or ``await close()``."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, timeout_s: float = 60.0,
                 max_retries: int = 3, max_retry_wait_s: float = 10.0, headers: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, max_retries, max_retry_wait_s)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, headers=headers,
                                       transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise ClientConnectionError(None, type(exc).__name__, str(exc) or repr(exc)) from exc
            wait = self._wait_s(response, attempt)
            if wait is None:
                break
            attempt += 1
            await asyncio.sleep(wait)
        if response.status_code >= 400:
            raise error_from(response)
        return response

    async def classify(self, image: Image | Sequence[Image], *, model: str | None = None, top_k: int = 5,
                       version: int | None = None) -> ClassifyResult | list[ClassifyResult]:
        kwargs, many = image_request(image)
        r = await self.request("POST", "/v1/classify",
                               params=_params(model=model, top_k=top_k, version=version), **kwargs)
        return _results(r, ClassifyResult, many)

    async def detect(self, image: Image | Sequence[Image], *, model: str | None = None,
                     version: int | None = None, score_threshold: float | None = None,
                     iou_threshold: float | None = None, max_detections: int | None = None,
                     classes: Sequence[str] | None = None,
                     box_format: str | None = None) -> DetectResult | list[DetectResult]:
        kwargs, many = image_request(image)
        params = _params(model=model, version=version, score_threshold=score_threshold,
                         iou_threshold=iou_threshold, max_detections=max_detections,
                         classes=",".join(classes) if classes else None, format=box_format)
        return _results(await self.request("POST", "/v1/detect", params=params, **kwargs), DetectResult, many)

    async def super_resolve(self, image: Image, *, model: str | None = None, version: int | None = None,
                            image_format: str | None = None, quality: int | None = None) -> SuperResolved:
        kwargs, _ = image_request(image)
        params = _params(model=model, version=version, format=image_format, quality=quality)
        return super_resolved(await self.request("POST", "/v1/super-resolve", params=params, **kwargs))

    async def models(self) -> list[ModelInfo]:
        return ModelList.model_validate((await self.request("GET", "/v1/models")).json()).models

    async def model(self, name: str) -> ModelInfo:
        return ModelInfo.model_validate((await self.request("GET", f"/v1/models/{name}")).json())

    async def ready(self) -> bool:
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False
