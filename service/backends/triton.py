"""The Triton backend: models run on a Triton Inference Server, reached with tritonclient's asyncio clients.

Models are discovered from Triton's repository index, and each model's config (Triton's JSON form
of ``config.pbtxt``) goes through ``spec_from_config``, the same function the embedded runtime uses,
so both backends build the same specs. Tensors travel as binary (gRPC raw contents, HTTP binary
extension); Triton does the batching. A background task re-reads readiness every
``triton_poll_interval_s``: the gateway starts when Triton is down (live, not ready) and recovers by
itself when Triton comes back.

Labels: Triton does not serve label files. The gateway reads ``<repository>/<model>/<label_filename>``
when it can see the repository (compose and Kubernetes mount it into both containers); otherwise it
asks Triton's classification extension once, for every entry of one dummy item (sent at the network's
input size), and keeps the "score:index:label" strings' labels. Triton ranks the item's flattened
output, so for a segmenter's ``[C, -1, -1]`` every entry must come back for lines 0..C-1 to be among
them: done up to ``triton_label_probe_max_entries``.

When the repository is visible, the served version's ``model.onnx`` is also read (once, off the event
loop) for its metadata, as the embedded runtime does: a bare ONNX file that Triton auto-completes
without visiongate's parameters gets the same task, head, input size and labels on both backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import InferenceServerException

from ..autocomplete import GraphInfo, read_graph
from ..deadlines import remaining_s
from ..errors import (
    BackendError,
    BackendUnavailable,
    BadRequest,
    DeadlineExceeded,
    InvalidArgument,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    ServiceUnavailable,
    VisionGateError,
)
from ..repository import ConfigError, ModelSpec, read_labels, spec_from_config
from ..settings import Settings
from ._triton_clients import TritonClient, make_client
from .base import (
    Duration,
    Job,
    ModelState,
    ModelStats,
    ModelStatus,
    Tensors,
    Ticket,
    batch_slices,
    concat_outputs,
    resolve_version,
)

logger = logging.getLogger("visiongate.triton")

#: gRPC status (as tritonclient spells it: ``str(grpc.StatusCode.X)``) -> the gateway's error class
GRPC_STATUS: dict[str, type[VisionGateError]] = {
    "StatusCode.CANCELLED": BackendUnavailable,  # the channel closed under the call
    "StatusCode.UNKNOWN": BackendError,
    "StatusCode.INVALID_ARGUMENT": InvalidArgument,
    "StatusCode.DEADLINE_EXCEEDED": DeadlineExceeded,
    "StatusCode.NOT_FOUND": ModelNotFound,
    "StatusCode.ALREADY_EXISTS": BackendError,
    "StatusCode.PERMISSION_DENIED": BackendError,
    "StatusCode.RESOURCE_EXHAUSTED": Overloaded,
    "StatusCode.FAILED_PRECONDITION": BackendError,
    "StatusCode.ABORTED": BackendUnavailable,
    "StatusCode.OUT_OF_RANGE": InvalidArgument,
    "StatusCode.UNIMPLEMENTED": BackendError,
    "StatusCode.INTERNAL": BackendError,
    "StatusCode.UNAVAILABLE": BackendUnavailable,
    "StatusCode.DATA_LOSS": BackendError,
    "StatusCode.UNAUTHENTICATED": BackendError,
}

#: HTTP status of Triton's REST answer -> error class (Triton sends 400 for most request errors)
HTTP_STATUS: dict[str, type[VisionGateError]] = {
    "400": InvalidArgument,
    "404": ModelNotFound,
    "408": DeadlineExceeded,
    "429": Overloaded,
    "499": BackendUnavailable,  # Triton's "cancelled"
    "500": BackendError,
    "501": BackendError,
    "502": BackendUnavailable,
    "503": BackendUnavailable,
    "504": DeadlineExceeded,
}

#: message fragments that say more than the status; checked first, in order (Triton's own wording)
MESSAGES: tuple[tuple[str, type[VisionGateError]], ...] = (
    ("has no available versions", ModelNotReady),  # "Request for unknown model: 'x' has no available..."
    ("is not at ready state", ModelNotReady),
    ("is not ready", ModelNotReady),
    ("unknown model", ModelNotFound),  # "Request for unknown model: 'x' is not found"
    ("exceeds maximum queue size", Overloaded),  # dynamic batcher's max_queue_size
)


def error_class(status: str | None, message: str) -> type[VisionGateError]:
    """The most specific gateway error for a tritonclient status and message; BackendError if unknown."""
    lowered = message.lower()
    for fragment, cls in MESSAGES:
        if fragment in lowered:
            return cls
    if status is None:
        return BackendError
    return GRPC_STATUS.get(status) or HTTP_STATUS.get(status) or BackendError


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures that reach us unwrapped: aiohttp's (HTTP client) and the OS's."""
    try:
        import aiohttp
    except ImportError:  # gRPC-only install
        return (ConnectionError,)
    return (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)


@contextlib.contextmanager
def triton_errors(model: str | None = None, retry_after_s: float = 1.0) -> Iterator[None]:
    """Translate tritonclient's and the transports' exceptions into the gateway's error tree."""
    where = f"model {model!r}" if model else "Triton"
    try:
        yield
    except VisionGateError:
        raise
    except InferenceServerException as exc:
        message = str(exc.message() or exc)
        cls = error_class(exc.status(), message)
        if issubclass(cls, ServiceUnavailable):
            raise cls(f"{where}: {message}", retry_after_s=retry_after_s) from exc
        if cls is ModelNotFound:
            raise ModelNotFound(f"Triton has no {where}: {message}") from exc
        raise cls(f"{where}: {message}") from exc
    except TimeoutError as exc:  # asyncio.timeout, aiohttp's timeouts
        raise DeadlineExceeded(f"{where}: no answer from Triton in time") from exc
    except _transport_errors() as exc:
        raise BackendUnavailable(f"Triton is unreachable ({type(exc).__name__}: {exc})",
                                 retry_after_s=retry_after_s) from exc


def parse_classification(entries: np.ndarray, num_classes: int | None) -> tuple[str, ...] | None:
    """Labels from Triton classification strings ``b"score:index:label"`` (labels may hold ':').

    ``num_classes=None``: every labelled entry, which must be indices 0..n-1, and only when an entry past
    the end of the label file came back too (Triton writes it as ``b"score:index"``): an answer of fewer
    entries than label lines (an instance model's per-detection class ids, few on a blank probe) would
    otherwise pass for a shorter label file.
    """
    labels: dict[int, str] = {}
    unlabelled: list[int] = []
    for raw in entries.reshape(-1):
        parts = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(":", 2)
        if len(parts) == 2 and parts[1].isdigit():
            unlabelled.append(int(parts[1]))
        elif len(parts) == 3 and parts[1].isdigit() and (num_classes is None or int(parts[1]) < num_classes):
            labels[int(parts[1])] = parts[2]
    count = len(labels) if num_classes is None else num_classes
    if count == 0 or any(i not in labels for i in range(count)):
        return None
    if num_classes is None and not any(i >= count for i in unlabelled):
        return None
    return tuple(labels[i] for i in range(count))


def probe_shape(spec: ModelSpec) -> list[int] | None:
    """The shape of a one-item request to ``spec``'s first input: dynamic image dims are the network's
    input size from the preprocessing parameters (what the gateway sends), a dynamic batch axis is 1;
    None when a dim stays unknown."""
    dims = [int(d) for d in spec.input.dims]
    if spec.max_batch_size > 0:
        dims = [1, *dims]
    elif len(dims) == 4 and dims[0] < 1:
        dims[0] = 1
    if min(dims, default=0) >= 1:
        return dims
    prep = spec.preprocess
    if prep.input_size is None or len(dims) not in (3, 4):
        return None
    height, width = prep.input_size
    image = [prep.channels, height, width] if prep.layout == "NCHW" else [height, width, prep.channels]
    filled = [*dims[:-3], *(d if d > 0 else k for d, k in zip(dims[-3:], image, strict=True))]
    return filled if min(filled) >= 1 else None


#: Triton platforms/backends whose model is a version folder's ONNX file (python: a model.py running it)
GRAPH_BACKENDS = frozenset({"onnxruntime_onnx", "onnxruntime", "python"})


def _read_graph(path: Path) -> GraphInfo | None:
    try:
        return read_graph(path)
    except ConfigError as exc:
        logger.warning("%s; its metadata is not used", exc)
        return None


def _duration(raw: Any) -> Duration:
    raw = raw or {}
    return Duration(int(raw.get("count", 0)), int(raw.get("ns", 0)))


def stats_from_json(entry: dict[str, Any]) -> ModelStats:
    """One entry of Triton's statistics JSON (int64s may arrive as strings) as ``ModelStats``."""
    inf = entry.get("inference_stats") or {}
    batches = {int(b.get("batch_size", 0)): (_duration(b.get("compute_input")), _duration(b.get("compute_infer")),
                                             _duration(b.get("compute_output")))
               for b in entry.get("batch_stats") or ()}
    return ModelStats(
        name=str(entry.get("name", "")), version=int(entry.get("version") or 0),
        last_inference_ms=int(entry.get("last_inference", 0)), inference_count=int(entry.get("inference_count", 0)),
        execution_count=int(entry.get("execution_count", 0)), success=_duration(inf.get("success")),
        fail=_duration(inf.get("fail")), queue=_duration(inf.get("queue")),
        compute_input=_duration(inf.get("compute_input")), compute_infer=_duration(inf.get("compute_infer")),
        compute_output=_duration(inf.get("compute_output")), batches=batches)


@dataclass(frozen=True)
class TritonTicket:
    spec: ModelSpec
    version: int
    items: int

    @property
    def model(self) -> str:
        return self.spec.name

    def release(self) -> None:
        pass

    def __enter__(self) -> TritonTicket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class TritonBackend:
    name = "triton"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: TritonClient | None = None
        self._specs: dict[str, ModelSpec] = {}  # models Triton reports READY
        self._known: set[str] = set()  # every model Triton has listed (404 vs not ready)
        self._labels: dict[str, tuple[str, ...] | None] = {}
        self._graphs: dict[Path, tuple[int, asyncio.Future[GraphInfo | None]]] = {}  # by file, with its mtime
        self._server_up = False
        self._poller: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.load_errors: dict[str, str] = {}
        self._pool = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")

    @property
    def _retry_after_s(self) -> float:
        return max(1.0, self._settings.triton_poll_interval_s)

    async def start(self) -> None:
        self._client = make_client(self._settings)
        await self.refresh()
        if not self._server_up:
            logger.warning("Triton at %s is not ready yet; will keep trying every %ss",
                           self._settings.triton_url, self._settings.triton_poll_interval_s)
        self._poller = asyncio.create_task(self._poll(), name="triton-readiness")

    async def close(self) -> None:
        self._server_up = False
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.drain_timeout_s):
                await self._idle.wait()
        for _, reading in self._graphs.values():
            reading.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def models(self) -> list[ModelSpec]:
        return list(self._specs.values()) if self._server_up else []

    def describe(self, model: str) -> ModelSpec:
        if not self._server_up:
            raise BackendUnavailable(f"Triton at {self._settings.triton_url} is not reachable or not ready",
                                     retry_after_s=self._retry_after_s)
        if model in self._specs:
            return self._specs[model]
        if model in self._known:
            raise ModelNotReady(f"model {model!r} is not ready on Triton", retry_after_s=self._retry_after_s)
        raise ModelNotFound(f"no model named {model!r}", available=sorted(self._specs))

    def ready(self) -> bool:
        return self._server_up and bool(self._specs)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._settings.triton_poll_interval_s)
            await self.refresh()

    async def refresh(self) -> None:
        """Re-read Triton's readiness and repository index; fetch configs of newly ready models."""
        assert self._client is not None
        timeout = min(self._settings.triton_timeout_s, max(1.0, self._settings.triton_poll_interval_s))
        try:
            with triton_errors():
                async with asyncio.timeout(timeout):
                    if not await self._client.server_ready(timeout):
                        self._set_down("Triton answers but is not ready")
                        return
                    index = await self._client.repository_index(timeout)
                ready: dict[str, list[int]] = {}
                for entry in index:
                    name = str(entry["name"])
                    self._known.add(name)
                    if entry.get("state") == "READY" and str(entry.get("version", "")).isdigit():
                        ready.setdefault(name, []).append(int(entry["version"]))
                # a new model's discovery (config, label probe, graph) has a request's timeout, not the poll's:
                # ranking a whole segmentation output for its labels must not make a healthy Triton look down
                found = await asyncio.gather(*(self._discover(name, tuple(sorted(versions)))
                                               for name, versions in ready.items()), return_exceptions=True)
                specs = {}
                for result in found:  # every discovery has ended: none is left running on a failure
                    if isinstance(result, BaseException):
                        raise result
                    if result is not None:
                        specs[result.name] = result
        except VisionGateError as exc:
            self._set_down(exc.message)
            return
        if not self._server_up:
            logger.info("Triton at %s is ready; models: %s", self._settings.triton_url, sorted(specs))
        self._specs, self._server_up = specs, True

    def _set_down(self, why: str) -> None:
        if self._server_up:
            logger.warning("Triton at %s went away: %s", self._settings.triton_url, why)
        self._server_up = False

    async def _discover(self, name: str, versions: tuple[int, ...]) -> ModelSpec | None:
        timeout = self._settings.triton_timeout_s
        try:
            with triton_errors(name, self._retry_after_s):
                async with asyncio.timeout(timeout):
                    return await self._spec(name, versions, timeout)
        except (ModelNotFound, ModelNotReady):  # unloaded since the index was read
            return None

    async def _spec(self, name: str, versions: tuple[int, ...], timeout: float) -> ModelSpec | None:
        current = self._specs.get(name)
        if current is not None and current.versions == versions:
            return current
        assert self._client is not None
        with triton_errors(name, self._retry_after_s):
            config = await self._client.model_config(name, timeout)
        if not config.get("platform"):  # python/custom backends name a backend, not a platform
            config["platform"] = config.get("backend", "")
        graph = await self._graph(name, versions[-1], config) if versions else None
        try:
            spec = spec_from_config(config, versions=versions, graph=graph)
        except ConfigError as exc:
            if self.load_errors.get(name) != str(exc):
                logger.error("cannot serve Triton model %s: %s", name, exc)
            self.load_errors[name] = str(exc)
            return None
        self.load_errors.pop(name, None)
        if name not in self._labels:
            self._labels[name] = await self._find_labels(spec, config, timeout)
        labels = self._labels[name]
        return spec if labels is None else spec_from_config(config, labels=labels, versions=versions, graph=graph)

    async def _graph(self, name: str, version: int, config: dict[str, Any]) -> GraphInfo | None:
        """The served version's ONNX graph, when the gateway sees the repository (compose and Kubernetes mount
        it). Its metadata completes the parameters as on the embedded runtime (an Ultralytics export's task,
        head, input size and labels), so a bare ``model.onnx`` that Triton auto-completes without them is
        served alike. Read once per file, off the event loop; a read cut short by the timeout goes on for the
        next poll."""
        if {config.get("platform"), config.get("backend")}.isdisjoint(GRAPH_BACKENDS):
            return None  # a TensorRT plan or a TorchScript file is no ONNX graph, whatever lies beside it
        filename = str(config.get("default_model_filename") or "")
        path = self._settings.repository / name / str(version) / (filename if filename.endswith(".onnx")
                                                                   else "model.onnx")
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        cached = self._graphs.get(path)
        if cached is None or cached[0] != stamp:
            cached = self._graphs[path] = (stamp, asyncio.ensure_future(asyncio.to_thread(_read_graph, path)))
        return await asyncio.shield(cached[1])

    async def _find_labels(self, spec: ModelSpec, config: dict[str, Any],
                           timeout: float) -> tuple[str, ...] | None:
        labelled = next((o for o in config.get("output", ()) if o.get("label_filename")), None)
        if labelled is None:
            return None
        path = self._settings.repository / spec.name / str(labelled["label_filename"])
        if path.is_file():
            return read_labels(path)
        dims = [int(d) for d in labelled.get("dims", ())]
        shape = probe_shape(spec)
        if not dims or shape is None:
            logger.warning("labels of %s: %s is not visible and the input shape is dynamic; "
                           "answers will carry class ids", spec.name, path)
            return None
        output = str(labelled["name"])
        limit = self._settings.triton_label_probe_max_entries
        if min(dims) >= 1:  # ask for every entry of one dummy item: the first dims[-1] indices are the classes
            count, classes = math.prod(dims), dims[-1]
        else:
            # A dynamic output (a segmenter's [C, -1, -1]): Triton ranks the item's flattened entries and names
            # entry k after label line k, so lines 0..C-1 come back only if every entry does. One more than the
            # limit is asked for: an answer that long says the item has more entries than the limit.
            count, classes = limit + 1, None
        dummy = np.zeros(shape, dtype=spec.input.dtype)
        assert self._client is not None
        try:
            with triton_errors(spec.name, self._retry_after_s):
                result = await self._client.infer(spec.name, {spec.input.name: dummy}, [output],
                                                  None, timeout, class_count=count)
        except (BadRequest, BackendError) as exc:
            logger.warning("labels of %s: not visible at %s and Triton would not classify: %s",
                           spec.name, path, exc.message)
            return None
        if classes is None and result[output].shape[-1] > limit:
            logger.warning("labels of %s: not visible at %s and its output has more than %d entries to rank "
                           "(VISIONGATE_TRITON_LABEL_PROBE_MAX_ENTRIES); answers will carry class ids",
                           spec.name, path, limit)
            return None
        labels = parse_classification(result[output], classes)
        if labels is None:
            logger.warning("labels of %s: not visible at %s and Triton's classification of %s does not cover "
                           "the whole label file; answers will carry class ids", spec.name, path, output)
            return None
        logger.info("labels of %s: read from Triton's classification extension (%s not visible)",
                    spec.name, path)
        return labels

    # --- lifecycle, admission, inference ------------------------------------------------------

    def states(self) -> list[ModelStatus]:
        out = []
        for name in sorted(self._known | set(self.load_errors)):
            if name in self._specs and self._server_up:
                out.append(ModelStatus(name, ModelState.READY))
            else:
                reason = self.load_errors.get(name) or ("Triton is not reachable" if not self._server_up
                                                        else "not ready on Triton")
                out.append(ModelStatus(name, ModelState.UNAVAILABLE, reason=reason))
        return out

    async def load(self, model: str) -> None:
        assert self._client is not None
        with triton_errors(model, self._retry_after_s):
            await self._client.load_model(model, self._settings.triton_timeout_s)
        self._specs.pop(model, None)  # its config may have changed: read it again
        await self.refresh()

    async def unload(self, model: str) -> None:
        assert self._client is not None
        with triton_errors(model, self._retry_after_s):
            await self._client.unload_model(model, self._settings.triton_timeout_s)
        await self.refresh()

    def admit(self, model: str, version: int | None, items: int) -> TritonTicket:
        """Triton queues and refuses by itself; the gateway only checks the model and version."""
        spec = self.describe(model)
        return TritonTicket(spec, resolve_version(spec, version), items)

    def refusal(self, model: str) -> Exception | None:
        return None  # no queue here: Triton's own queue policy refuses on the normal path

    async def infer(self, ticket: Ticket, inputs: Tensors) -> Tensors:
        assert isinstance(ticket, TritonTicket)
        spec = ticket.spec
        expected = {t.name for t in spec.inputs}
        if set(inputs) != expected:
            raise InvalidArgument(f"model {spec.name!r} takes inputs {sorted(expected)}, got {sorted(inputs)}")
        if spec.max_batch_size <= 0:
            return await self._infer_once(spec, inputs, ticket.version)
        n = int(next(iter(inputs.values())).shape[0])
        # Triton rejects a request larger than max_batch_size: send the slices concurrently
        parts = await asyncio.gather(*(self._infer_once(spec, {k: a[s] for k, a in inputs.items()}, ticket.version)
                                       for s in batch_slices(n, spec.max_batch_size)))
        return concat_outputs(list(parts))

    async def infer_prepared(self, ticket: Ticket, jobs: list[Job]) -> list[Tensors]:
        """The jobs (decode + preprocess) run on the gateway's pool; Triton batches the tensors."""
        assert isinstance(ticket, TritonTicket)
        loop = asyncio.get_running_loop()
        made = await asyncio.gather(*(loop.run_in_executor(self._pool, job) for job in jobs))
        spec = ticket.spec
        if spec.max_batch_size <= 0:
            outs = [await self._infer_once(spec, {k: v[0] for k, v in m.items()}, ticket.version) for m in made]
            return [{k: v[None] for k, v in o.items()} for o in outs]
        if len({tuple(v.shape for v in m.values()) for m in made}) > 1:  # dynamic shapes: one by one
            return list(await asyncio.gather(*(self.infer(ticket, m) for m in made)))
        outputs = await self.infer(ticket, concat_outputs(list(made)))
        return [{k: v[i:i + 1] for k, v in outputs.items()} for i in range(len(made))]

    async def stats(self, model: str | None = None, version: int | None = None) -> list[ModelStats]:
        """Triton's own statistics, read from Triton (the gateway keeps no copy)."""
        assert self._client is not None
        if model is not None:
            resolve_version(self.describe(model), version)
        with triton_errors(model, self._retry_after_s):
            raw = await self._client.statistics(model or "", "" if version is None else str(version),
                                                self._settings.triton_timeout_s)
        return [stats_from_json(entry) for entry in raw]

    async def _infer_once(self, spec: ModelSpec, inputs: dict[str, np.ndarray],
                          version: int | None) -> dict[str, np.ndarray]:
        assert self._client is not None
        timeout = min(self._settings.triton_timeout_s, remaining_s(self._settings.request_timeout_s))
        if timeout <= 0:
            raise DeadlineExceeded("the request's deadline passed before it reached Triton")
        self._in_flight += 1
        self._idle.clear()
        try:
            with triton_errors(spec.name, self._retry_after_s):
                async with asyncio.timeout(timeout):
                    return await self._client.infer(spec.name, inputs, [o.name for o in spec.outputs],
                                                    version, timeout)
        except BackendUnavailable:
            self._set_down("a request found it unreachable")  # /readyz says so now; the poller restores it
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()


__all__ = ["GRPC_STATUS", "HTTP_STATUS", "MESSAGES", "TritonBackend", "TritonTicket", "error_class", "triton_errors"]
