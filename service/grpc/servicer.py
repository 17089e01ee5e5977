"""``inference.GRPCInferenceService`` (KServe v2 / Triton gRPC) over the same service layer as REST.

Every RPC goes through ``_call``: metrics by method and status code, the request's deadline (the
caller's gRPC deadline, never past ``request_timeout_s``), inference counted in the one open-request
count (past ``max_open_requests``: UNAVAILABLE), and errors answered through the one error tree
(``status.to_grpc``). Shared-memory, trace and log settings are not implemented (UNIMPLEMENTED).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from .. import __version__, dataplane, oip
from ..api import v2 as rest_v2
from ..deadlines import request_deadline
from ..errors import (
    DeadlineExceeded,
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    RouteNotFound,
    ServiceUnavailable,
    VisionGateError,
    log_error,
)
from ..inference import InferenceService
from ..metrics import Metrics
from ..middleware import OpenRequests
from ..protocol import grpc_service_pb2 as pb
from ..protocol import grpc_service_pb2_grpc as pb_grpc
from ..protocol import model_config_pb2
from ..security.auth import Gate, key_from_metadata
from ..security.scopes import scope_for
from ..settings import Settings
from . import codec
from .status import to_grpc

T = TypeVar("T")
SERVICE = "inference.GRPCInferenceService"
#: the server metadata's extensions: REST's, plus encoded images (a BYTES image input, see ``oip``)
EXTENSIONS = rest_v2.EXTENSIONS


def _version(raw: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit():
        raise InvalidArgument(f"model_version must be a version number, got {raw!r}")
    return int(raw)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: InferenceService, settings: Settings, metrics: Metrics,
                 open_requests: OpenRequests, draining: Callable[[], bool], gate: Gate | None = None) -> None:
        self.service = service
        self.gate = gate
        self.settings = settings
        self.metrics = metrics
        self.open = open_requests
        self.draining = draining

    # --- the one path of every call ---------------------------------------------------------------

    def _timeout_s(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        remaining = context.time_remaining()
        timeout = self.settings.request_timeout_s
        return timeout if remaining is None else max(0.0, min(timeout, remaining))

    async def _call(self, method: str, context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], Awaitable[T]],
                    inference: bool = False) -> T:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            try:
                self._authorize(method, context)
                with request_deadline(self._timeout_s(context)):
                    if not inference:
                        return await work()
                    return await self._admitted(work)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                error, status = to_grpc(exc)
                code = status.code
                self._log(method, error)
                context.set_trailing_metadata(status.trailers)
                await context.abort(status.code, status.message)
                raise AssertionError("unreachable: abort raises") from None
        finally:
            route = f"/{SERVICE}/{method}"
            self.metrics.requests.labels(route, code.name).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _authorize(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """The same keys, scopes and rate limits as REST, the key read from the call's metadata."""
        if self.gate is None:
            return
        scope = scope_for("POST", f"/{SERVICE}/{method}")
        if self.gate.needs_key(scope):
            self.gate.check(key_from_metadata(context.invocation_metadata() or ()), scope)

    async def _admitted(self, work: Callable[[], Awaitable[T]]) -> T:
        limit = self.settings.max_open_requests
        if limit and self.open.count >= limit:
            raise Overloaded(f"{self.open.count} requests are being served; retry later", retry_after_s=1)
        self.open.count += 1
        try:
            return await work()
        finally:
            self.open.count -= 1

    def _log(self, method: str, error: VisionGateError) -> None:
        if isinstance(error, ServiceUnavailable | DeadlineExceeded):
            self.metrics.rejected.labels(error.type).inc()
        log_error("gRPC", method, error)

    # --- health and metadata ----------------------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        async def work() -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self._call("ServerLive", context, work)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        async def work() -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=not self.draining() and self.service.backend.ready())

        return await self._call("ServerReady", context, work)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        async def work() -> pb.ModelReadyResponse:
            version = _version(request.version)
            try:
                rest_v2.spec_of(self.service, request.name, version)
            except (ModelNotFound, ServiceUnavailable):
                return pb.ModelReadyResponse(ready=False)  # as Triton: not ready, not an error
            return pb.ModelReadyResponse(ready=True)

        return await self._call("ModelReady", context, work)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        async def work() -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(name="visiongate", version=__version__, extensions=EXTENSIONS)

        return await self._call("ServerMetadata", context, work)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        async def work() -> pb.ModelMetadataResponse:
            meta = rest_v2.metadata_of(rest_v2.spec_of(self.service, request.name, _version(request.version)))
            return json_format.ParseDict(meta.model_dump(), pb.ModelMetadataResponse())

        return await self._call("ModelMetadata", context, work)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        async def work() -> pb.ModelConfigResponse:
            spec = rest_v2.spec_of(self.service, request.name, _version(request.version))
            # the REST config (Triton's JSON shape) read with Triton's schema: one source for both
            config = json_format.ParseDict(rest_v2.config_json(spec), model_config_pb2.ModelConfig())
            return pb.ModelConfigResponse(config=config)

        return await self._call("ModelConfig", context, work)

    # --- inference --------------------------------------------------------------------------------

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        version = _version(request.model_version)
        inputs = codec.decode_inputs(request)
        result = await oip.infer(self.service, request.model_name, version, inputs,
                                 codec.requested_outputs(request))
        response = pb.ModelInferResponse(model_name=result.spec.name, model_version=str(result.version),
                                         id=request.id)
        codec.encode_response(response, result.outputs)
        return response

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return await self._call("ModelInfer", context, lambda: self._infer(request), inference=True)

    async def ModelStreamInfer(self, request_iterator: AsyncIterator[pb.ModelInferRequest],
                               context: Any) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests of one stream run concurrently; each answer (or its error, as ``error_message``,
        the stream staying open) is sent when ready, with the request's ``id``."""
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def one(request: pb.ModelInferRequest) -> None:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                with request_deadline(self._timeout_s(context)):
                    response = await self._admitted(lambda: self._infer(request))
                await answers.put(pb.ModelStreamInferResponse(infer_response=response))
            except Exception as exc:
                error, status = to_grpc(exc)
                code = status.code
                self._log("ModelStreamInfer", error)
                await answers.put(pb.ModelStreamInferResponse(
                    error_message=status.message,
                    infer_response=pb.ModelInferResponse(model_name=request.model_name,
                                                         model_version=request.model_version, id=request.id)))
            finally:
                route = f"/{SERVICE}/ModelStreamInfer"
                self.metrics.requests.labels(route, code.name).inc()
                self.metrics.latency.labels(route).observe(time.perf_counter() - started)

        async def read() -> None:
            async for request in request_iterator:
                task = asyncio.create_task(one(request))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:
                await asyncio.gather(*running, return_exceptions=True)
            await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            await reader
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

    # --- extensions: statistics, repository --------------------------------------------------------

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any
                              ) -> pb.ModelStatisticsResponse:
        async def work() -> pb.ModelStatisticsResponse:
            stats = await self.service.backend.stats(request.name or None, _version(request.version))
            return json_format.ParseDict(dataplane.stats_json(stats), pb.ModelStatisticsResponse())

        return await self._call("ModelStatistics", context, work)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any
                              ) -> pb.RepositoryIndexResponse:
        async def work() -> pb.RepositoryIndexResponse:
            index = dataplane.repository_index(self.service.backend, ready_only=request.ready)
            return json_format.ParseDict({"models": index}, pb.RepositoryIndexResponse())

        return await self._call("RepositoryIndex", context, work)

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: Any
                                  ) -> pb.RepositoryModelLoadResponse:
        async def work() -> pb.RepositoryModelLoadResponse:
            await rest_v2.control_model(self.service, self.settings, request.model_name, load=True)
            return pb.RepositoryModelLoadResponse()

        return await self._call("RepositoryModelLoad", context, work)

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest, context: Any
                                    ) -> pb.RepositoryModelUnloadResponse:
        async def work() -> pb.RepositoryModelUnloadResponse:
            await rest_v2.control_model(self.service, self.settings, request.model_name, load=False)
            return pb.RepositoryModelUnloadResponse()

        return await self._call("RepositoryModelUnload", context, work)

    # --- not implemented: shared memory, trace and log settings ------------------------------------

    async def _unimplemented(self, method: str, context: Any) -> Any:
        async def work() -> Any:
            raise RouteNotFound(f"{method} is not implemented by visiongate (Triton's shared-memory, trace and "
                                "log-settings extensions)")

        return await self._call(method, context, work)

    async def SystemSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("SystemSharedMemoryStatus", context)

    async def SystemSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("SystemSharedMemoryRegister", context)

    async def SystemSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("SystemSharedMemoryUnregister", context)

    async def CudaSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("CudaSharedMemoryStatus", context)

    async def CudaSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("CudaSharedMemoryRegister", context)

    async def CudaSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("CudaSharedMemoryUnregister", context)

    async def TraceSetting(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("TraceSetting", context)

    async def LogSettings(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("LogSettings", context)
