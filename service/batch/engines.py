"""Where inference runs. Every engine maps one image's bytes to a ``Scored`` or a ``VisionGateError``.

- ``ServiceEngine``: an ``InferenceService`` over a backend in this process: the embedded
  onnxruntime (default) or Triton (``--via triton://host:port``); the gateway's exact code path
  without HTTP.
- ``HttpEngine``: a running visiongate gateway (``--via http://host:port``) through the project's
  Python client. Its JSON errors are rebuilt as the same error classes; network failures become
  ``BackendUnavailable`` and timeouts ``DeadlineExceeded``, which the retry layer treats as
  transient.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from .. import errors
from ..backends.base import Backend
from ..errors import BackendUnavailable, DeadlineExceeded, ServiceUnavailable, VisionGateError
from ..inference import InferenceService
from ..settings import Settings
from .tasks import Scored, TaskOptions, call_service, sr_result

T = TypeVar("T")


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
        if not self.backend.models():
            broken = "; ".join(f"{s.name}: {s.reason}" for s in self.backend.states() if s.reason)
            raise BackendUnavailable(f"the {self.backend.name} backend has no model to serve: "
                                     f"{broken or 'no model loaded'}")
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

    # load one model, not the whole repository (an unknown name still loads all, to say what exists)
    known = opts.model is not None and (settings.repository / opts.model / "config.pbtxt").is_file()
    only = {opts.model} if opts.model is not None and known else None
    return ServiceEngine(OnnxRuntimeBackend(settings, only=only), settings, opts)


def triton_engine(settings: Settings, opts: TaskOptions, url: str) -> ServiceEngine:
    """``url``: ``triton://host:port`` (gRPC) or ``triton+http://host:port``."""
    try:
        from ..backends.triton import TritonBackend
    except ImportError as exc:
        raise VisionGateError(f"--via {url} needs the Triton backend: {exc}") from exc
    parts = urlsplit(url)
    protocol = "http" if parts.scheme == "triton+http" else "grpc"
    triton_settings = settings.model_copy(update={"backend": "triton", "triton_url": parts.netloc,
                                                  "triton_protocol": protocol})
    return ServiceEngine(TritonBackend(triton_settings), triton_settings, opts)


_BY_STATUS: dict[int, type[VisionGateError]] = {
    400: errors.BadRequest, 404: errors.ModelNotFound, 413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType, 422: errors.BadRequest, 429: ServiceUnavailable,
    502: ServiceUnavailable, 503: ServiceUnavailable, 504: DeadlineExceeded,
}


def remote_error(status: int | None, type_name: str, message: str,
                 retry_after_s: float | None = None) -> VisionGateError:
    """A gateway error answer -> the error class it was raised as (by its ``type``), else by status.

    ``status`` None means no answer at all (refused, reset, timed out): transient.
    """
    if status is None:
        timed_out = "timeout" in type_name.lower()
        cls: type[VisionGateError] = DeadlineExceeded if timed_out else BackendUnavailable
        return cls(f"no answer from the gateway: {type_name}: {message}", **_retry(cls, retry_after_s))
    text = f"gateway answered {status}: {message[:300]}"
    found = getattr(errors, type_name, None)
    if isinstance(found, type) and issubclass(found, VisionGateError) and found.status_code == status:
        cls = found
    else:
        # 502/503 from anything that is not our gateway's JSON (a proxy, a load balancer) and 429
        # are transient; any other 5xx is the gateway failing on this image.
        cls = _BY_STATUS.get(status, VisionGateError)
    return cls(text, **_retry(cls, retry_after_s))


def _retry(cls: type[VisionGateError], retry_after_s: float | None) -> dict[str, float]:
    if issubclass(cls, ServiceUnavailable):
        return {"retry_after_s": retry_after_s if retry_after_s is not None else 1.0}
    return {}


class HttpEngine:
    """Each image through ``service.client.AsyncClient`` to ``/v1/<task>`` of a running gateway.

    The client's own 503 retries are off (``max_retries=0``): the batch retry layer decides, with
    jitter, the same way for every engine.
    """

    def __init__(self, base_url: str, opts: TaskOptions, timeout_s: float = 60.0) -> None:
        from ..client import AsyncClient

        self.name = f"http ({base_url})"
        self.opts = opts
        self.client = AsyncClient(base_url, timeout_s=timeout_s, max_retries=0)

    async def start(self) -> None:
        await self._call(self.client.models())

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, request: Awaitable[T]) -> T:
        from ..client import GatewayError

        try:
            return await request
        except GatewayError as exc:
            raise remote_error(exc.status, exc.type, exc.message, exc.retry_after_s) from exc

    async def score(self, data: bytes) -> Scored:
        o = self.opts
        if o.task == "classify":
            res = await self._call(self.client.classify(data, model=o.model, top_k=o.top_k,
                                                        version=o.version))
            assert not isinstance(res, list)
            return Scored(res.model_dump(mode="json"))
        if o.task == "detect":
            det = await self._call(self.client.detect(data, model=o.model, version=o.version,
                                                      score_threshold=o.score_threshold))
            assert not isinstance(det, list)
            return Scored(det.model_dump(mode="json"))
        sr = await self._call(self.client.super_resolve(data, model=o.model, version=o.version,
                                                        image_format="png"))
        return Scored(sr_result(sr.model, sr.version, sr.scale, sr.input_size, sr.output_size),
                      image_png=sr.image)


