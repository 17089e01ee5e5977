"""The embedded runtime: every model in the repository, in this process, on onnxruntime.

Reads the same Triton repository layout a Triton server would (``<model>/config.pbtxt``,
``<model>/<version>/model.onnx``), honours ``version_policy``, ``max_batch_size`` and
``dynamic_batching.max_queue_delay_microseconds``, and batches concurrent requests itself.
Models whose platform is not ONNX (e.g. ``tensorrt_plan``) are skipped with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..deadlines import remaining_s, waited_s
from ..errors import BackendError, InvalidArgument, ModelNotFound, Overloaded, ServiceUnavailable
from ..repository import ConfigError, ModelSpec, read_model, scan
from ..settings import Settings
from .batcher import Batcher, Prepare

logger = logging.getLogger("visiongate.onnxruntime")

_ONNX_PLATFORMS = ("onnxruntime_onnx", "onnxruntime")


@contextlib.contextmanager
def ort_errors(model: str) -> Iterator[None]:
    """Translate onnxruntime's exceptions at one boundary."""
    try:
        yield
    except (InvalidArgument, ServiceUnavailable):
        raise
    except Exception as exc:
        kind = type(exc).__name__
        if kind in ("InvalidArgument", "InvalidGraph") or "invalid dimensions" in str(exc).lower():
            raise InvalidArgument(f"model {model!r} rejected the input: {exc}") from exc
        raise BackendError(f"model {model!r} failed: {kind}: {exc}") from exc


@dataclass
class _Loaded:
    spec: ModelSpec
    sessions: dict[int, ort.InferenceSession]
    batchers: dict[int, Batcher]


def _providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, settings: Settings, on_batch: Callable[[str, int], None] | None = None,
                 only: set[str] | None = None) -> None:
        """``only``: load just these models (batch scoring needs one, not the whole repository)."""
        self._settings = settings
        self._only = only
        self._on_batch = on_batch
        self._models: dict[str, _Loaded] = {}
        self._ready = False
        self.load_errors: dict[str, str] = {}

    def _session(self, path: Path, intra_op_threads: int | None = None) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads or self._settings.intra_op_threads
        if intra_op_threads:
            # its pool must not spin between calls while the single-threaded sessions work
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), sess_options=opts, providers=_providers())

    def _load(self, model_dir: Path) -> _Loaded | None:
        entry = read_model(model_dir)
        spec = entry.spec
        if spec.platform not in _ONNX_PLATFORMS:
            logger.info("skipping %s: platform %s is not served by the embedded runtime",
                        spec.name, spec.platform)
            return None
        sessions, batchers = {}, {}
        filename = str(entry.config.get("default_model_filename") or "model.onnx")
        for version in spec.versions:
            path = model_dir / str(version) / filename
            if not path.is_file():
                raise ConfigError(f"{path} is missing")
            session = self._session(path)
            sessions[version] = session
            solo = self._solo_threads()
            alone = self._runner(spec.name, self._session(path, solo)) if solo else None
            batchers[version] = Batcher(
                f"{spec.name}/{version}", self._runner(spec.name, session), run_alone=alone,
                nice=self._settings.inference_thread_nice,
                workers=self._settings.inference_workers,
                max_batch=spec.max_batch_size or 1,
                delay_s=self._batch_delay_s(spec, session),
                max_queue=self._settings.max_queue_per_model,
                max_wait_s=self._settings.max_queue_wait_s, waited=waited_s,
                on_batch=(lambda n, name=spec.name: self._on_batch(name, n)) if self._on_batch else None,
            )
        if not sessions:
            raise ConfigError(f"model {spec.name!r} has no version folder with a model")
        return _Loaded(spec, sessions, batchers)

    def _batch_delay_s(self, spec: ModelSpec, session: ort.InferenceSession) -> float:
        # On a CPU a batch of 8 costs 8 single runs (notes/performance.md): waiting for company only
        # adds latency. On a GPU the model's max_queue_delay buys throughput, as in Triton.
        policy = self._settings.batch_delay
        if policy == "auto":
            policy = "off" if session.get_providers()[0] == "CPUExecutionProvider" else "config"
        return spec.max_queue_delay_us / 1e6 if policy == "config" else 0.0

    def _solo_threads(self) -> int | None:
        """Intra-op threads for a batch that runs alone (None: no separate session). Measured on 2
        cores: one request alone takes 6 ms with 2 threads vs 10 ms with 1 (notes/performance.md)."""
        solo = self._settings.solo_intra_op_threads
        if "CUDAExecutionProvider" in _providers() or solo <= self._settings.intra_op_threads:
            return None
        return solo

    def _runner(self, name: str, session: ort.InferenceSession) -> Callable[[dict[str, np.ndarray]],
                                                                             dict[str, np.ndarray]]:
        output_names = [o.name for o in session.get_outputs()]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with ort_errors(name):
                values = session.run(output_names, inputs)
            return dict(zip(output_names, values, strict=True))

        return run

    async def start(self) -> None:
        for model_dir in scan(self._settings.repository):
            if self._only is not None and model_dir.name not in self._only:
                continue
            try:
                loaded = self._load(model_dir)
            except Exception as exc:  # one broken model must not take the others down  # noqa: BLE001
                self.load_errors[model_dir.name] = str(exc)
                logger.error("cannot load model %s: %s", model_dir.name, exc)
                continue
            if loaded is not None:
                self._models[loaded.spec.name] = loaded
                logger.info("loaded %s (%s) versions %s", loaded.spec.name, loaded.spec.task,
                            list(loaded.sessions))
        self._ready = bool(self._models)

    async def close(self) -> None:
        self._ready = False
        for loaded in self._models.values():
            for batcher in loaded.batchers.values():
                batcher.close(self._settings.drain_timeout_s)

    def models(self) -> list[ModelSpec]:
        return [m.spec for m in self._models.values()]

    def describe(self, model: str) -> ModelSpec:
        try:
            return self._models[model].spec
        except KeyError:
            raise ModelNotFound(f"no model named {model!r}",
                                available=sorted(self._models)) from None

    def ready(self) -> bool:
        return self._ready

    def queue_depth(self, model: str) -> int:
        loaded = self._models.get(model)
        return sum(b.depth for b in loaded.batchers.values()) if loaded else 0

    def admit(self, model: str, n: int, version: int | None = None) -> None:
        """503 at once when ``model`` would refuse ``n`` more items (checked before decoding)."""
        loaded = self._models.get(model)
        batcher = loaded.batchers.get(version if version is not None else max(loaded.batchers)) if loaded else None
        if batcher is not None:
            batcher.admit(n, remaining_s(self._settings.request_timeout_s), reserve=True)

    def refusal(self, model: str) -> Overloaded | None:
        """The ``Overloaded`` one more item for ``model``'s newest version would get now, else None."""
        loaded = self._models.get(model)
        if loaded is None:
            return None
        return loaded.batchers[max(loaded.batchers)].would_refuse(1, self._settings.request_timeout_s)

    def _batcher(self, model: str, version: int | None) -> Batcher:
        self.describe(model)
        loaded = self._models[model]
        v = version if version is not None else max(loaded.batchers)
        batcher = loaded.batchers.get(v)
        if batcher is None:
            raise ModelNotFound(f"model {model!r} has no loaded version {v}",
                                versions=sorted(loaded.batchers))
        return batcher

    async def infer_each(self, model: str, prepares: list[Prepare],
                         version: int | None = None) -> list[dict[str, np.ndarray]]:
        """One result per item, each item's inputs made by its ``prepare`` on the thread that runs the
        model (see ``Batcher.submit_prepare``). For models whose inputs have static shapes."""
        spec = self.describe(model)
        batcher = self._batcher(model, version)
        shape_key = tuple(t.dims for t in spec.inputs)
        if any(d < 0 for dims in shape_key for d in dims):
            raise InvalidArgument(f"model {model!r} has dynamic input shapes; send tensors with infer()")
        timeout_s = remaining_s(self._settings.request_timeout_s)
        return list(await asyncio.gather(*(batcher.submit_prepare(p, shape_key, timeout_s) for p in prepares)))

    async def infer(self, model: str, inputs: dict[str, np.ndarray],
                    version: int | None = None) -> dict[str, np.ndarray]:
        spec = self.describe(model)
        batcher = self._batcher(model, version)
        expected = {t.name for t in spec.inputs}
        if set(inputs) != expected:
            raise InvalidArgument(f"model {model!r} takes inputs {sorted(expected)}, got {sorted(inputs)}")
        n = int(next(iter(inputs.values())).shape[0])
        step = max(1, spec.max_batch_size)
        timeout_s = remaining_s(self._settings.request_timeout_s)  # the caller's deadline, if shorter
        if n <= step:
            return await batcher.submit(inputs, timeout_s)
        # one request with more items than a batch holds (several images, SR tiles): admitted once
        # as a whole, then split into batches that are not re-checked against each other
        batcher.claim(n, timeout_s)
        parts = await asyncio.gather(*(
            batcher.submit({k: a[i:i + step] for k, a in inputs.items()}, timeout_s, admit=False)
            for i in range(0, n, step)
        ))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
