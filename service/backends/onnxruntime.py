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
from pathlib import Path

import onnxruntime as ort

from ..autocomplete import graph_info
from ..errors import BackendError, InvalidArgument, ModelLoadFailed, ModelNotFound, ServiceUnavailable
from ..repository import ONNX_PLATFORMS, ConfigError, ModelSpec, read_model, scan
from ..settings import Settings
from .base import ModelState, ModelStatus, Tensors
from .batching import BatchedBackend, LoadedModel

logger = logging.getLogger("visiongate.onnxruntime")

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


def _providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRuntimeBackend(BatchedBackend):
    name = "onnxruntime"

    def __init__(self, settings: Settings, on_batch: Callable[[str, int], None] | None = None,
                 only: set[str] | None = None) -> None:
        """``only``: load just these models (batch scoring needs one, not the whole repository)."""
        super().__init__(settings, on_batch)
        self._only = only

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

    def _load(self, model_dir: Path) -> LoadedModel | None:
        entry = read_model(model_dir, default_max_batch_size=self._settings.default_max_batch_size)
        spec = entry.spec
        if spec.platform not in ONNX_PLATFORMS:
            return None
        for warning in spec.warnings:
            logger.warning("model %s: %s", spec.name, warning)
        batchers = {}
        provider = ""
        filename = str(entry.config.get("default_model_filename") or "model.onnx")
        for version in spec.versions:
            path = model_dir / str(version) / filename
            if not path.is_file():
                raise ConfigError(f"{path} is missing")
            session = self._session(path)
            spec.check_graph(graph_info(session))  # every version, not only the one the config was completed from
            # the provider the session really got: the GPU wheel on a host without a GPU lists CUDA as
            # available, then falls back to the CPU
            provider = session.get_providers()[0]
            solo = self._solo_threads(provider)
            alone = self._runner(spec, self._session(path, solo)) if solo else None
            batchers[version] = self._batcher(spec, version, self._runner(spec, session), alone,
                                              self._batch_delay_s(spec, session))
        if not batchers:
            raise ConfigError(f"model {spec.name!r} has no version folder with a model")
        return LoadedModel(spec, batchers, provider)

    def _batch_delay_s(self, spec: ModelSpec, session: ort.InferenceSession) -> float:
        # On a CPU a batch of 8 costs 8 single runs (measured, README "Performance"): waiting for
        # company only adds latency. On a GPU the model's max_queue_delay buys throughput, as in Triton.
        policy = self._settings.batch_delay
        if policy == "auto":
            policy = "off" if session.get_providers()[0] == "CPUExecutionProvider" else "config"
        return spec.max_queue_delay_us / 1e6 if policy == "config" else 0.0

    def _solo_threads(self, provider: str) -> int | None:
        """Intra-op threads for a batch that runs alone (None: no separate session). Measured on 2
        cores: one request alone takes 6 ms with 2 threads vs 10 ms with 1. Batch scoring (``only``)
        keeps every core busy and never runs alone: it skips the second session (faster start-up)."""
        solo = self._settings.solo_intra_op_threads
        if provider != "CPUExecutionProvider" or self._only is not None or solo <= self._settings.intra_op_threads:
            return None
        return solo

    def _runner(self, spec: ModelSpec, session: ort.InferenceSession) -> Callable[[Tensors], Tensors]:
        output_names = [o.name for o in session.get_outputs()]
        run_options = None
        if self._shrinks_arena(spec):
            # onnxruntime keeps its arena at the largest run it has seen: one 4-tile super-resolution
            # batch left ~1.4 GB per session for good. Shrinking it after each run gives it back
            # (measured: ~+12% time per SR batch); fixed-size models keep their small arena.
            run_options = ort.RunOptions()
            run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

        def run(inputs: Tensors) -> Tensors:
            with ort_errors(spec.name):
                values = session.run(output_names, inputs, run_options)
            return dict(zip(output_names, values, strict=True))

        return run

    def _shrinks_arena(self, spec: ModelSpec) -> bool:
        policy = self._settings.arena_shrinkage
        if policy == "dynamic":
            return any(d < 0 for t in spec.inputs for d in t.dims)
        return policy == "always"

    def model_dirs(self) -> dict[str, Path]:
        """The repository's model folders this backend serves, by name."""
        return {d.name: d for d in scan(self._settings.repository)
                if self._only is None or d.name in self._only}

    def _load_into_place(self, name: str, model_dir: Path) -> None:
        self._states[name] = ModelStatus(name, ModelState.LOADING)
        try:
            loaded = self._load(model_dir)
        except Exception as exc:
            self._fail(name, str(exc))
            return
        if loaded is None:
            self._states[name] = ModelStatus(name, ModelState.UNAVAILABLE,
                                             reason="its platform is not served by the embedded runtime")
            logger.info("skipping %s: its platform is not served by the embedded runtime", name)
            return
        self._install(loaded, str(model_dir))

    async def start(self) -> None:
        repository = self._settings.repository
        if not repository.is_dir():
            logger.error("the model repository %s does not exist; no model will be served", repository)
        dirs = self.model_dirs()
        logger.info("model repository %s: %d model folder(s): %s", repository.resolve(), len(dirs),
                    ", ".join(sorted(dirs)) or "none")
        for name, model_dir in sorted(dirs.items()):
            await asyncio.to_thread(self._load_into_place, name, model_dir)
        self._started = True

    async def load(self, model: str) -> None:
        model_dir = self.model_dirs().get(model)
        if model_dir is None:
            raise ModelNotFound(f"no model folder named {model!r} in {self._settings.repository}",
                                available=sorted(self.model_dirs()))
        await asyncio.to_thread(self._load_into_place, model, model_dir)
        state = self._states[model]
        if state.state != ModelState.READY:
            raise ModelLoadFailed(f"model {model!r} failed to load: {state.reason}")
