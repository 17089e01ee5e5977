"""The backend contract: everything the gateway asks of whatever runs the models.

A backend is found by nothing but this protocol: the service, the middleware and the protocol
front-ends (task REST, OIP REST, OIP gRPC, batch scoring) call these verbs and no others. A new
backend implements every one of them; ``FakeBackend`` (``backends/fake.py``) is the smallest
complete example.

One request's life on a backend::

    ticket = backend.admit(model, version, items)     # all of its items or none (503 Overloaded)
    with ticket:                                       # unused capacity is released on exit
        outputs = await backend.infer(ticket, inputs)            # caller-made tensors, or
        outputs = await backend.infer_prepared(ticket, jobs)     # one job per image: the backend
                                                                 # decides which thread runs it

``infer_prepared`` is how the embedded runtime decodes images on its inference threads (one
decode+run sequence per core, measured faster than a separate decode pool); a remote backend runs
the jobs on a pool and sends the tensors. Either way the service never knows which.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ModelNotFound
from ..repository import ModelSpec

Tensors = dict[str, np.ndarray]
#: makes one item's inputs (batch axis of 1), e.g. decode + resize one image; runs where the backend
#: chooses (the embedded runtime: on the thread that then runs the model)
Job = Callable[[], Tensors]


class ModelState(enum.StrEnum):
    """A model's state, as Triton's repository index names them."""

    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class ModelStatus:
    """One model (or one version) as the repository index shows it."""

    name: str
    state: ModelState
    version: int | None = None
    reason: str = ""
    #: where it runs, e.g. onnxruntime's CPUExecutionProvider / CUDAExecutionProvider, Triton's KIND_GPU
    provider: str = ""


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass
class ModelStats:
    """Triton's statistics-extension fields for one model version (durations in nanoseconds)."""

    name: str
    version: int
    last_inference_ms: int = 0
    inference_count: int = 0  # items (images, tiles) inferred
    execution_count: int = 0  # model runs (batches)
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    #: batch size -> (compute_input, compute_infer, compute_output) durations of batches of that size
    batches: dict[int, tuple[Duration, Duration, Duration]] = field(default_factory=dict)


class Ticket(Protocol):
    """What admission granted one request: capacity for all its items on one model version.

    Use it as a context manager: leaving it releases whatever the request did not use (it failed
    before reaching the model), so a refused or broken request never holds capacity.
    """

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def items(self) -> int: ...

    def release(self) -> None: ...

    def __enter__(self) -> Ticket: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """Runs models. Raises only ``service.errors`` classes and never blocks the event loop."""

    name: str

    async def start(self) -> None:
        """Load or discover models. May leave the backend not ready (e.g. Triton down)."""

    async def close(self) -> None:
        """Stop taking work, finish what was admitted, release sessions and clients."""

    def ready(self) -> bool:
        """True when the backend can serve (see ``Settings.readiness`` for what that requires)."""

    def models(self) -> list[ModelSpec]:
        """Every model that can be served now (state READY)."""

    def describe(self, model: str) -> ModelSpec:
        """The spec of one ready model; raises ``ModelNotFound`` (or ``ModelNotReady``)."""

    def states(self) -> list[ModelStatus]:
        """Every model the backend knows, ready or not, with the reason when not."""

    async def load(self, model: str) -> None:
        """(Re)load one model from the repository; in-flight requests finish on the old one."""

    async def unload(self, model: str) -> None:
        """Stop serving one model once its in-flight requests are done."""

    def admit(self, model: str, version: int | None, items: int) -> Ticket:
        """Admit one request of ``items`` items, all or none: raises ``Overloaded`` (503) when the
        model cannot take them in time, ``ModelNotFound`` for an unknown model or version."""

    def refusal(self, model: str) -> Exception | None:
        """The error admitting one more item for ``model`` would raise now, else None. Reserves
        nothing: an early look before a request's body is read (cheap: called per request)."""

    async def infer(self, ticket: Ticket, inputs: Tensors) -> Tensors:
        """Run caller-made tensors (batch axis first, if the model has one) under ``ticket``."""

    async def infer_prepared(self, ticket: Ticket, jobs: list[Job]) -> list[Tensors]:
        """Run one job per item under ``ticket``; one result per job, in order. A job that raises
        fails the whole call with its exception (the caller's request is about that image)."""

    async def stats(self, model: str | None = None, version: int | None = None) -> list[ModelStats]:
        """Statistics per model version (all when ``model`` is None)."""


def resolve_version(spec: ModelSpec, version: int | None) -> int:
    """The version a request for ``version`` is served by: that one, or the newest."""
    if not spec.versions:
        raise ModelNotFound(f"model {spec.name!r} has no version loaded")
    if version is None:
        return max(spec.versions)
    if version not in spec.versions:
        raise ModelNotFound(f"model {spec.name!r} has no version {version}; versions: {list(spec.versions)}",
                            versions=list(spec.versions))
    return version


def batch_slices(n: int, max_batch_size: int) -> Iterator[slice]:
    """Split ``n`` items into slices a model with ``max_batch_size`` accepts (0: no batch axis,
    one slice of everything)."""
    step = n if max_batch_size <= 0 else max_batch_size
    for start in range(0, n, max(1, step)):
        yield slice(start, min(n, start + step))


def concat_outputs(parts: list[Tensors]) -> Tensors:
    """Join per-slice outputs along the batch axis."""
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
