"""What every in-process backend shares: models held as one ``Batcher`` per version, admission by
reservation, hot swaps that let admitted requests finish, and the statistics extension's counters.

``OnnxRuntimeBackend`` and ``FakeBackend`` differ only in how a model is loaded (what runs a batch);
everything the ``Backend`` protocol asks about serving lives here once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..deadlines import remaining_s, waited_s
from ..errors import InvalidArgument, ModelNotFound, ModelNotReady
from ..repository import ModelSpec
from ..settings import Settings
from .base import (
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
from .batcher import Batcher, Reservation, RunBatch, model_stats

logger = logging.getLogger("visiongate.backend")

#: batch limit for a model whose batch axis is dynamic with no max_batch_size (it takes any number)
_ANY_BATCH = 64


@dataclass
class LoadedModel:
    spec: ModelSpec
    batchers: dict[int, Batcher]
    provider: str = ""

    def close(self, timeout_s: float) -> None:
        for batcher in self.batchers.values():
            batcher.close(timeout_s)


@dataclass(eq=False)
class BatcherTicket:
    """Admission of one request on one model version: a reservation on its batcher. The batcher
    is held here, so a request admitted before a reload finishes on the version it was admitted to."""

    spec: ModelSpec
    version: int
    items: int
    batcher: Batcher
    reservation: Reservation

    @property
    def model(self) -> str:
        return self.spec.name

    def release(self) -> None:
        self.reservation.release()

    def __enter__(self) -> BatcherTicket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reservation.release()


def _unbatched(job: Job) -> Job:
    def run() -> Tensors:
        return {k: v[0] for k, v in job().items()}

    return run


class BatchedBackend:
    """The serving half of an in-process backend; subclasses load models (``start``, ``load``)."""

    name = "batched"

    def __init__(self, settings: Settings, on_batch: Callable[[str, int], None] | None = None) -> None:
        self._settings = settings
        self._on_batch = on_batch
        self._models: dict[str, LoadedModel] = {}
        self._states: dict[str, ModelStatus] = {}
        self._started = False
        self._closing = False

    # --- loading helpers for subclasses --------------------------------------------------------

    def _batcher(self, spec: ModelSpec, version: int, run: RunBatch, run_alone: RunBatch | None = None,
                 delay_s: float = 0.0) -> Batcher:
        on_batch = self._on_batch
        return Batcher(
            f"{spec.name}/{version}", run, run_alone=run_alone,
            nice=self._settings.inference_thread_nice, workers=self._settings.inference_workers,
            max_batch=spec.images_per_call or _ANY_BATCH, delay_s=delay_s,
            max_queue=self._settings.max_queue_per_model, max_wait_s=self._settings.max_queue_wait_s,
            waited=waited_s, on_batch=(lambda n: on_batch(spec.name, n)) if on_batch else None,
        )

    def _install(self, loaded: LoadedModel, source: str) -> None:
        """Serve ``loaded`` from now on; the model it replaces drains in the background."""
        name = loaded.spec.name
        old = self._models.get(name)
        self._models[name] = loaded
        self._states[name] = ModelStatus(name, ModelState.READY, provider=loaded.provider)
        logger.info("loaded %s (%s) versions %s from %s", name, loaded.spec.task, list(loaded.batchers), source)
        if old is not None:
            self._retire(old)

    def _fail(self, name: str, reason: str) -> None:
        self._states[name] = ModelStatus(name, ModelState.UNAVAILABLE, reason=reason)
        logger.error("model %s is UNAVAILABLE: %s", name, reason)

    def _retire(self, old: LoadedModel) -> None:
        # requests admitted to the old batchers finish there; close() waits for them, off the loop
        threading.Thread(target=old.close, args=(self._settings.drain_timeout_s,), daemon=True,
                         name=f"retire-{old.spec.name}").start()

    # --- lifecycle ----------------------------------------------------------------------------

    async def unload(self, model: str) -> None:
        loaded = self._models.pop(model, None)
        if loaded is None and model not in self._states:
            raise ModelNotFound(f"no model named {model!r}", available=sorted(self._states))
        self._states[model] = ModelStatus(model, ModelState.UNAVAILABLE, reason="unloaded")
        logger.info("unloaded %s", model)
        if loaded is not None:
            self._retire(loaded)

    def forget(self, model: str) -> None:
        """The model is gone from the repository: drop it from the index too."""
        self._states.pop(model, None)

    async def close(self) -> None:
        self._closing = True
        for loaded in list(self._models.values()):
            await asyncio.to_thread(loaded.close, self._settings.drain_timeout_s)

    # --- what is served ----------------------------------------------------------------------

    def models(self) -> list[ModelSpec]:
        return [m.spec for m in self._models.values()]

    def describe(self, model: str) -> ModelSpec:
        loaded = self._models.get(model)
        if loaded is not None:
            return loaded.spec
        state = self._states.get(model)
        if state is not None:
            raise ModelNotReady(f"model {model!r} is {state.state}: {state.reason or 'loading'}",
                                retry_after_s=5, state=str(state.state), reason=state.reason)
        raise ModelNotFound(f"no model named {model!r}", available=sorted(self._models))

    def states(self) -> list[ModelStatus]:
        return [self._states[name] for name in sorted(self._states)]

    def ready(self) -> bool:
        if not self._started or self._closing or not self._models:
            return False
        if self._settings.readiness == "all":
            return all(s.state == ModelState.READY for s in self._states.values())
        return True

    # --- admission and inference ---------------------------------------------------------------

    def admit(self, model: str, version: int | None, items: int) -> BatcherTicket:
        spec = self.describe(model)
        v = resolve_version(spec, version)
        batcher = self._models[model].batchers[v]
        reservation = batcher.reserve(items, remaining_s(self._settings.request_timeout_s))
        return BatcherTicket(spec, v, items, batcher, reservation)

    def refusal(self, model: str) -> Exception | None:
        loaded = self._models.get(model)
        if loaded is None:
            return None
        return loaded.batchers[max(loaded.batchers)].would_refuse(1, self._settings.request_timeout_s)

    async def infer(self, ticket: Ticket, inputs: Tensors) -> Tensors:
        assert isinstance(ticket, BatcherTicket)
        spec = ticket.spec
        expected = {t.name for t in spec.inputs}
        if set(inputs) != expected:
            raise InvalidArgument(f"model {spec.name!r} takes inputs {sorted(expected)}, got {sorted(inputs)}")
        timeout_s = remaining_s(self._settings.request_timeout_s)  # the caller's deadline, if shorter
        if not spec.batch_axis:  # the tensors are one item
            return await ticket.batcher.submit(inputs, timeout_s, ticket.reservation, items=1)
        n = int(next(iter(inputs.values())).shape[0])
        # admitted once as a whole; the slices of one request do not refuse each other
        parts = await asyncio.gather(*(
            ticket.batcher.submit({k: a[s] for k, a in inputs.items()}, timeout_s, ticket.reservation)
            for s in batch_slices(n, spec.images_per_call)))
        return concat_outputs(list(parts))

    async def infer_prepared(self, ticket: Ticket, jobs: list[Job]) -> list[Tensors]:
        assert isinstance(ticket, BatcherTicket)
        spec = ticket.spec
        timeout_s = remaining_s(self._settings.request_timeout_s)
        static = tuple(t.dims for t in spec.inputs)
        dynamic = any(d < 0 for dims in static for d in dims) or spec.max_batch_size <= 0
        if not spec.batch_axis:  # jobs make [1, ...]; the model takes one item without that axis
            jobs = [_unbatched(job) for job in jobs]
        results = await asyncio.gather(*(
            # an item of unknown shape gets a key of its own: it is never batched with another
            ticket.batcher.submit_prepare(job, ((-1, i),) if dynamic else static, timeout_s,
                                          ticket.reservation)
            for i, job in enumerate(jobs)))
        if not spec.batch_axis:  # callers always get the batch axis back
            return [{k: v[None] for k, v in r.items()} for r in results]
        return list(results)

    async def stats(self, model: str | None = None, version: int | None = None) -> list[ModelStats]:
        out: list[ModelStats] = []
        for name in sorted(self._models) if model is None else [model]:
            spec = self.describe(name)
            batchers = self._models[name].batchers
            versions = sorted(batchers) if version is None else [resolve_version(spec, version)]
            out.extend(model_stats(name, v, batchers[v].stats) for v in versions)
        return out
