"""Reading a user's checkpoint safely and fitting it onto a module, with errors a person can act on.

Formats:
- ``.safetensors``: preferred; plain tensors, nothing executes.
- ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin``: only through ``torch.load(weights_only=True)``. A pickle
  that needs to run code (a whole pickled ``nn.Module``, custom classes) is refused, never loaded.

What training scripts write beside the weights is read and ignored: numbers and tensors
(``epoch``, pytorch/examples' ``best_acc1`` tensor), optimizer and scheduler state, and the ``args``
``argparse.Namespace`` that timm's and torchvision's reference scripts pickle. Exactly those classes
are allowed to the unpickler (plus Lightning's ``AttributeDict`` hyper-parameters, read as a plain
dict, and numpy scalars); anything else that would run code is still refused.

Common wrappers are unwrapped: ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}``,
``{"ema": ...}`` / ``{"state_dict_ema": ...}`` / ``{"model_ema": ...}`` (the averaged weights are what one
deploys), and one or more key prefixes shared by every key: ``module.`` (DataParallel/DDP), ``_orig_mod.``
(torch.compile), ``model.`` / ``net.`` (Lightning modules). When the keys still do not fit, the
mismatch says whether they fit under some other prefix (a hint, never a silent guess).
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

logger = logging.getLogger("visiongate.export")

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

#: wrapper keys, most specific first (EMA weights beat the raw ones when both are saved)
WRAPPER_KEYS = ("state_dict_ema", "model_ema", "ema", "state_dict", "model_state_dict", "model", "net",
                "params", "weights")
PREFIXES = ("module.", "_orig_mod.", "model.", "net.")
#: BatchNorm's step counter: not used in eval, absent from FrozenBatchNorm2d checkpoints
IGNORED_SUFFIXES = ("num_batches_tracked",)
#: bookkeeping tensors beside the weights (torch.optim.swa_utils.AveragedModel's counter)
IGNORED_KEYS = ("n_averaged",)


def _safe_globals() -> list[Any]:
    """The classes training scripts pickle beside the weights; none of them runs code when rebuilt."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar  # type: ignore[attr-defined]
    allowed: list[Any] = [argparse.Namespace, scalar, np.dtype, (scalar, "numpy.core.multiarray.scalar")]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    # Lightning's hyper-parameters: a dict subclass; rebuilt as a plain dict, no Lightning import needed
    allowed += [(dict, f"{module}.AttributeDict") for module in (
        "lightning.fabric.utilities.data", "lightning_fabric.utilities.data", "pytorch_lightning.utilities.parsing")]
    return allowed


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
            with torch.serialization.safe_globals(_safe_globals()):
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
    first = lines[0] if lines else ""
    detail = next((line for line in lines if "Unsupported" in line or "global" in line.lower()), first)
    return re.sub(r"\x1b\[[0-9;]*m", "", detail.split(". Please use")[0])


def _wrapped(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The state dict inside a training-loop container, if ``raw`` is one.

    A state dict maps dotted names to tensors, so a wrapper key ("state_dict", "model", ...) holding a
    mapping marks a container even when tensors sit beside it (pytorch/examples' ``best_acc1``).
    """
    for key in WRAPPER_KEYS:
        inner = raw.get(key)
        if isinstance(inner, Mapping) and _has_tensors(inner):
            return inner
    return None


def _has_tensors(mapping: Mapping[str, Any], depth: int = 3) -> bool:
    for value in mapping.values():
        if isinstance(value, torch.Tensor):
            return True
        if depth > 1 and isinstance(value, Mapping) and _has_tensors(value, depth - 1):
            return True
    return False


def strip_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes that every key shares, repeatedly (``module._orig_mod.`` ...)."""
    changed = True
    while changed and tensors:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix):]: v for k, v in tensors.items()}
                changed = True
    return tensors


def normalise_state_dict(raw: Any, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap training-loop containers and strip wrapper prefixes; keep tensors only."""
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        if not isinstance(raw, Mapping):
            break
        inner = _wrapped(raw)
        if inner is None:
            break
        raw = inner
    tensors = _tensors(raw) if isinstance(raw, Mapping) else {}
    tensors = {k: v for k, v in tensors.items() if k not in IGNORED_KEYS}
    if not tensors:
        keys = list(raw)[:10] if isinstance(raw, Mapping) else type(raw).__name__
        raise CheckpointError(f"{source}: no tensors found (top-level: {keys}); expected a state_dict")
    return strip_prefixes(tensors)


def _tensors(mapping: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in mapping.items() if isinstance(v, torch.Tensor)}


@dataclass(frozen=True)
class Mismatch:
    """How a state dict differs from a module's: the three ways a load can fail."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (key, checkpoint, model)
    #: what the keys look like they need (another prefix), when they almost match
    hint: str = ""

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
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "; ".join(parts) or "fits"


def _prefixes(expected: Sequence[str], given: Mapping[str, Any]) -> dict[str, int]:
    """Prefixes ``p`` for which ``p + key`` is in ``given``, with how many expected keys each covers."""
    probe = [k for k in expected if "." in k][:50] or list(expected)[:50]
    found: dict[str, int] = {}
    for key in probe:
        for name in given:
            if name.endswith("." + key):
                found.setdefault(name[:-len(key)], 0)
    return {p: sum(1 for k in expected if p + k in given) for p in found}


def align(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """``state`` re-keyed when every model key sits under exactly one extra prefix (``net.``, ``encoder.``).

    Keys outside that prefix (a Lightning module's loss weights, metric states) are dropped, with a
    log line. Anything less certain is left for ``compare`` to report, with a hint.
    """
    expected = [k for k in module.state_dict() if not k.endswith(IGNORED_SUFFIXES)]
    if not expected or all(k in state for k in expected):
        return state
    full = [p for p, n in _prefixes(expected, state).items() if n == len(expected)]
    if len(full) != 1:
        return state
    prefix = full[0]
    inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    dropped = [k for k in state if not k.startswith(prefix)]
    if dropped:
        logger.warning("the model's weights are the checkpoint's keys under %r; ignoring %d other keys (%s%s)",
                       prefix, len(dropped), ", ".join(dropped[:5]), " ..." if len(dropped) > 5 else "")
    return inside


def _hint(expected: Sequence[str], given: Mapping[str, Any]) -> str:
    if not expected:
        return ""
    prefixes = _prefixes(expected, given)
    if len(prefixes) > 1 and any(n == len(expected) for n in prefixes.values()):
        names = ", ".join(repr(p) for p, n in prefixes.items() if n == len(expected))
        return f"the model's keys appear under several prefixes ({names}): save the one network you want to export"
    if prefixes:
        prefix, n = max(prefixes.items(), key=lambda item: item[1])
        if n >= len(expected) // 2:
            return f"{n} of the model's {len(expected)} keys are in the checkpoint under the prefix {prefix!r}"
    # the other way round: the checkpoint lacks a prefix that the model's keys carry
    inverse = _prefixes(list(given), dict.fromkeys(expected))
    if inverse:
        prefix, n = max(inverse.items(), key=lambda item: item[1])
        if n >= len(given) // 2:
            return (f"{n} of the checkpoint's {len(given)} keys match the model's once prefixed with {prefix!r}: "
                    f"it may hold only part of the network (a backbone?)")
    return ""


def compare(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> Mismatch:
    expected = {k: v for k, v in module.state_dict().items() if not k.endswith(IGNORED_SUFFIXES)}
    given = {k: v for k, v in state.items() if not k.endswith(IGNORED_SUFFIXES)}
    missing = tuple(k for k in expected if k not in given)
    unexpected = tuple(k for k in given if k not in expected)
    return Mismatch(
        missing=missing,
        unexpected=unexpected,
        shapes=tuple((k, tuple(given[k].shape), tuple(v.shape)) for k, v in expected.items()
                     if k in given and tuple(given[k].shape) != tuple(v.shape)),
        hint=_hint(list(expected), given) if missing else "",
    )


def load_into(module: ModuleT, state: Mapping[str, torch.Tensor], *, what: str = "model") -> ModuleT:
    """Load ``state`` into ``module`` exactly (every tensor, every shape) and put it in eval mode.

    Raises:
        CheckpointError: naming the missing, unexpected and mis-shaped keys.
    """
    state = align(module, state)
    mismatch = compare(module, state)
    if not mismatch.fits:
        raise CheckpointError(f"the checkpoint does not fit {what}: {mismatch.describe()}")
    ignored = {k: v for k, v in module.state_dict().items() if k.endswith(IGNORED_SUFFIXES)}
    module.load_state_dict({**ignored, **{k: v for k, v in state.items() if k in module.state_dict()}},
                           strict=True)
    return module.eval()


def load_first_fitting(candidates: Sequence[tuple[str, Callable[[], ModuleT]]],
                       state: Mapping[str, torch.Tensor], *, what: str) -> tuple[str, ModuleT]:
    """Try each ``(layout, build)`` in turn (e.g. torchvision's then timm's key names); load the first that fits.

    Raises:
        CheckpointError: none fits; the message shows the mismatch of the closest layout.
    """
    tried: list[tuple[str, Mismatch]] = []
    for layout, build in candidates:
        module = build()
        mismatch = compare(module, align(module, state))
        if mismatch.fits:
            return layout, load_into(module, state, what=f"{what} ({layout})")
        tried.append((layout, mismatch))
    layout, closest = min(tried, key=lambda item: item[1].size)
    others = [name for name, _ in tried if name != layout]
    tail = f" (also tried the {', '.join(others)} layout{'s' if len(others) > 1 else ''})" if others else ""
    raise CheckpointError(f"the checkpoint does not fit {what}; closest is the {layout} layout: "
                          f"{closest.describe()}{tail}")
