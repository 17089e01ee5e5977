"""Where inference runs. Every engine maps one image's bytes to a ``Scored`` or a ``VisionGateError``.

- ``ServiceEngine``: an ``InferenceService`` over a backend in this process: the embedded
  onnxruntime (default) or Triton (``--via triton://host:port``); the gateway's exact code path
  without HTTP.
- ``HttpEngine``: a running visiongate gateway (``--via http://host:port``). Its JSON errors are
  rebuilt as the same error classes; network failures become ``BackendUnavailable`` and timeouts
  ``DeadlineExceeded``, which the retry layer treats as transient.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

from .. import errors
from ..backends.base import Backend
from ..errors import BackendUnavailable, DeadlineExceeded, ServiceUnavailable, VisionGateError
from ..inference import InferenceService
from ..settings import Settings
from .tasks import Scored, TaskOptions, call_service, sr_result_from_headers


class Engine(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def score(self, data: bytes) -> Scored: ...


class ServiceEngine:
    """The gateway's ``InferenceService`` in-process; concurrent calls batch in the backend."""

    def __init__(self, backend: Backend, settings: Settings, opts: TaskOptions) -> None:
        self.backend = backend
        self.settings = settings
        self.opts = opts
        self.service = InferenceService(backend, settings)
        self.name = backend.name

    async def start(self) -> None:
        await self.backend.start()
        if not self.backend.ready():
            detail = getattr(self.backend, "load_errors", None) or "no model loaded"
            raise BackendUnavailable(f"the {self.backend.name} backend is not ready: {detail}")
        # fail fast on a wrong --model / --task, before any image is read
        model = self.opts.model or self.service.default_model(self.opts.service_task)
        self.service.model_for(model, self.opts.service_task)

    async def close(self) -> None:
        await self.backend.close()
        self.service.close()

    async def score(self, data: bytes) -> Scored:
        return await call_service(self.service, self.opts, data)


def local_engine(settings: Settings, opts: TaskOptions) -> ServiceEngine:
    from ..backends.onnxruntime import OnnxRuntimeBackend

    return ServiceEngine(OnnxRuntimeBackend(settings), settings, opts)


def triton_engine(settings: Settings, opts: TaskOptions, url: str) -> ServiceEngine:
    """``url``: ``triton://host:port`` (gRPC) or ``triton+http://host:port``."""
    try:
        from ..backends.triton import TritonBackend  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise VisionGateError(f"--via {url} needs the Triton backend: {exc}") from exc
    parts = urlsplit(url)
    protocol = "http" if parts.scheme == "triton+http" else "grpc"
    triton_settings = settings.model_copy(update={"backend": "triton", "triton_url": parts.netloc,
                                                  "triton_protocol": protocol})
    return ServiceEngine(TritonBackend(triton_settings), triton_settings, opts)


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def remote_error(status: int, body: Any, retry_after: str | None) -> VisionGateError:
    """A gateway error response -> the error class it was raised as (by its ``type``), else by status."""
    err = body.get("error") if isinstance(body, dict) else None
    type_name = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    message = f"gateway answered {status}: {message or str(body)[:200]}"
    cls = getattr(errors, str(type_name), None)
    if not (isinstance(cls, type) and issubclass(cls, VisionGateError)) or cls.status_code != status:
        cls = {400: errors.BadRequest, 404: errors.ModelNotFound, 413: errors.PayloadTooLarge,
               415: errors.UnsupportedMediaType, 504: DeadlineExceeded}.get(status)
        if cls is None:
            # 502/503 from anything that is not our gateway's JSON (a proxy, a load balancer) and
            # 429 are transient; any other 5xx is the gateway failing on this image.
            cls = ServiceUnavailable if status in (429, 502, 503) else VisionGateError
    if issubclass(cls, ServiceUnavailable):
        return cls(message, retry_after_s=parse_retry_after(retry_after))
    return cls(message)


class HttpEngine:
    """POSTs each image as a raw body to ``<base>/v1/<task>`` of a running gateway."""

    def __init__(self, base_url: str, opts: TaskOptions, timeout_s: float = 60.0,
                 max_connections: int = 32) -> None:
        import httpx

        self.name = f"http ({base_url})"
        self.opts = opts
        self._httpx = httpx
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    async def start(self) -> None:
        try:
            resp = await self._client.get("/v1/models")
        except self._httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"the gateway at {self._client.base_url} cannot be reached: {exc}") from exc
        if resp.status_code != 200:
            raise remote_error(resp.status_code, _json(resp), resp.headers.get("retry-after"))

    async def close(self) -> None:
        await self._client.aclose()

    async def score(self, data: bytes) -> Scored:
        httpx = self._httpx
        try:
            resp = await self._client.post(self.opts.endpoint, params=self.opts.query(), content=data,
                                           headers={"content-type": "application/octet-stream"})
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"the gateway did not answer in time: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:  # refused, reset, closed mid-response
            raise BackendUnavailable(
                f"connection to the gateway failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise remote_error(resp.status_code, _json(resp), resp.headers.get("retry-after"))
        if self.opts.task == "super-resolve":
            try:
                return Scored(sr_result_from_headers(resp.headers), image_png=resp.content)
            except (KeyError, ValueError) as exc:
                raise VisionGateError(f"the gateway's super-resolve answer lacks header {exc}") from exc
        return Scored(resp.json())


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text
