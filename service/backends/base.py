"""The backend protocol: what the gateway needs from whatever runs the models."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..repository import ModelSpec


@runtime_checkable
class Backend(Protocol):
    """Runs models. ``infer`` takes a batch (axis 0) of one request's images.

    Implementations batch concurrent calls themselves (embedded) or let the server do it (Triton),
    raise only ``service.errors`` classes, and never block the event loop.
    """

    name: str

    async def start(self) -> None:
        """Load or discover models. May leave the backend not ready (e.g. Triton down)."""

    async def close(self) -> None:
        """Release sessions/clients; finish in-flight work first."""

    def models(self) -> list[ModelSpec]:
        """Every model that can be served now."""

    def describe(self, model: str) -> ModelSpec:
        """The spec of one model; raises ``ModelNotFound``."""

    def ready(self) -> bool:
        """True when the backend can serve its models."""

    async def infer(self, model: str, inputs: dict[str, np.ndarray],
                    version: int | None = None) -> dict[str, np.ndarray]:
        """Run one batch: ``inputs`` by input name, each with the batch axis first."""
