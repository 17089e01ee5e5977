"""Reading a user's checkpoint safely and fitting it onto a module, with errors a person can act on.

Formats:
- ``.safetensors``: preferred; plain tensors, nothing executes.
- ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin``: only through ``torch.load(weights_only=True)``. A pickle
  that needs to run code (a whole pickled ``nn.Module``, custom classes) is refused, never loaded.

Common wrappers are unwrapped: ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}``,
``{"ema": ...}`` / ``{"state_dict_ema": ...}`` (the averaged weights are what one deploys), and key prefixes
``module.`` (DataParallel/DDP), ``model.`` (Lightning) and ``_orig_mod.`` (torch.compile).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: wrapper keys, most specific first (EMA weights beat the raw ones when both are saved)
WRAPPER_KEYS = ("state_dict_ema", "model_ema", "ema", "state_dict", "model_state_dict", "model", "net",
                "params", "weights")
PREFIXES = ("module.", "_orig_mod.", "model.")
#: BatchNorm's step counter: not used in eval, absent from FrozenBatchNorm2d checkpoints
IGNORED_SUFFIXES = ("num_batches_tracked",)


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or its tensors do not fit the architecture."""


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (tensors on the CPU), unwrapped and without DDP-style prefixes.

    Raises:
        CheckpointError: missing file, a pickle that needs code execution, or no tensors inside.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(path), device="cpu")
        except SafetensorError as exc:
            raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from exc
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"{path} is a pickle that needs to execute code to load (for example a whole pickled "
                f"nn.Module or custom classes); it was refused for safety (torch.load weights_only=True). "
                f"Save only the weights instead: torch.save(model.state_dict(), 'model.pth') or, better, "
                f"safetensors.torch.save_file(model.state_dict(), 'model.safetensors'). Details: "
                f"{_unpickler_detail(exc)}"
            ) from exc
        except (RuntimeError, EOFError, OSError) as exc:
            raise CheckpointError(f"{path} could not be read as a PyTorch checkpoint: {exc}") from exc
    return normalise_state_dict(raw, source=str(path))


def _unpickler_detail(exc: Exception) -> str:
    """The line of torch's message that names what the pickle wanted to run."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "Unsupported" in line or "global" in line.lower()), lines[0] if lines else "")
    return re.sub(r"\x1b\[[0-9;]*m", "", detail.split(". Please use")[0])


def normalise_state_dict(raw: Any, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap training-loop containers and strip wrapper prefixes; keep tensors only."""
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        if not isinstance(raw, Mapping) or _tensors(raw):
            break
        inner = next((raw[k] for k in WRAPPER_KEYS if isinstance(raw.get(k), Mapping)), None)
        if inner is None:
            break
        raw = inner
    tensors = _tensors(raw) if isinstance(raw, Mapping) else {}
    if not tensors:
        keys = list(raw)[:10] if isinstance(raw, Mapping) else type(raw).__name__
        raise CheckpointError(f"{source}: no tensors found (top-level: {keys}); expected a state_dict")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def _tensors(mapping: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in mapping.items() if isinstance(v, torch.Tensor)}


@dataclass(frozen=True)
class Mismatch:
    """How a state dict differs from a module's: the three ways a load can fail."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (key, checkpoint, model)

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)

    @property
    def size(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.shapes)

    def describe(self, limit: int = 8) -> str:
        parts = []
        for title, items in (("missing from the checkpoint", self.missing),
                             ("unexpected (not in the model)", self.unexpected)):
            if items:
                more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
                parts.append(f"{len(items)} {title}: {', '.join(items[:limit])}{more}")
        if self.shapes:
            shown = "; ".join(f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.shapes[:limit])
            more = f" ... and {len(self.shapes) - limit} more" if len(self.shapes) > limit else ""
            parts.append(f"{len(self.shapes)} shape mismatches: {shown}{more}")
        return "; ".join(parts) or "fits"


def compare(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> Mismatch:
    expected = {k: v for k, v in module.state_dict().items() if not k.endswith(IGNORED_SUFFIXES)}
    given = {k: v for k, v in state.items() if not k.endswith(IGNORED_SUFFIXES)}
    return Mismatch(
        missing=tuple(k for k in expected if k not in given),
        unexpected=tuple(k for k in given if k not in expected),
        shapes=tuple((k, tuple(given[k].shape), tuple(v.shape)) for k, v in expected.items()
                     if k in given and tuple(given[k].shape) != tuple(v.shape)),
    )


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, what: str = "model") -> torch.nn.Module:
    """Load ``state`` into ``module`` exactly (every tensor, every shape) and put it in eval mode.

    Raises:
        CheckpointError: naming the missing, unexpected and mis-shaped keys.
    """
    mismatch = compare(module, state)
    if not mismatch.fits:
        raise CheckpointError(f"the checkpoint does not fit {what}: {mismatch.describe()}")
    ignored = {k: v for k, v in module.state_dict().items() if k.endswith(IGNORED_SUFFIXES)}
    module.load_state_dict({**ignored, **{k: v for k, v in state.items() if k in module.state_dict()}},
                           strict=True)
    return module.eval()


def load_first_fitting(candidates: Sequence[tuple[str, Callable[[], torch.nn.Module]]],
                       state: Mapping[str, torch.Tensor], *, what: str) -> tuple[str, torch.nn.Module]:
    """Try each ``(layout, build)`` in turn (e.g. torchvision's then timm's key names); load the first that fits.

    Raises:
        CheckpointError: none fits; the message shows the mismatch of the closest layout.
    """
    tried: list[tuple[str, Mismatch]] = []
    for layout, build in candidates:
        module = build()
        mismatch = compare(module, state)
        if mismatch.fits:
            return layout, load_into(module, state, what=f"{what} ({layout})")
        tried.append((layout, mismatch))
    layout, closest = min(tried, key=lambda item: item[1].size)
    others = [name for name, _ in tried if name != layout]
    tail = f" (also tried the {', '.join(others)} layout{'s' if len(others) > 1 else ''})" if others else ""
    raise CheckpointError(f"the checkpoint does not fit {what}; closest is the {layout} layout: "
                          f"{closest.describe()}{tail}")
