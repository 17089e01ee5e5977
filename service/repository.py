"""Model specs: what the gateway knows about a model, read from its Triton ``config.pbtxt``.

``spec_from_config`` takes the dict shape of Triton's model-config JSON, so the embedded runtime
(reading the file) and the Triton backend (asking the server) build specs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import pbtxt
from .vision.preprocess import PreprocessConfig

Task = Literal["classify", "detect", "super_resolve", "segment"]
TASKS: tuple[Task, ...] = ("classify", "detect", "super_resolve", "segment")

#: Triton data types <-> numpy
DTYPES: dict[str, np.dtype[Any]] = {
    "TYPE_BOOL": np.dtype(np.bool_),
    "TYPE_UINT8": np.dtype(np.uint8),
    "TYPE_UINT16": np.dtype(np.uint16),
    "TYPE_UINT32": np.dtype(np.uint32),
    "TYPE_UINT64": np.dtype(np.uint64),
    "TYPE_INT8": np.dtype(np.int8),
    "TYPE_INT16": np.dtype(np.int16),
    "TYPE_INT32": np.dtype(np.int32),
    "TYPE_INT64": np.dtype(np.int64),
    "TYPE_FP16": np.dtype(np.float16),
    "TYPE_FP32": np.dtype(np.float32),
    "TYPE_FP64": np.dtype(np.float64),
}


class ConfigError(ValueError):
    """A model's config.pbtxt is missing something the gateway needs."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's TYPE_* name
    dims: tuple[int, ...]  # without the batch axis; -1 = dynamic

    @property
    def dtype(self) -> np.dtype[Any]:
        return DTYPES[self.data_type]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: Task
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocess: PreprocessConfig
    parameters: dict[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None
    versions: tuple[int, ...] = ()
    max_queue_delay_us: int = 0

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def param(self, key: str, default: str) -> str:
        return self.parameters.get(key, default)

    def float_param(self, key: str, default: float) -> float:
        return float(self.parameters.get(key, default))

    def int_param(self, key: str, default: int) -> int:
        return int(self.parameters.get(key, default))


def _floats(text: str) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in text.split(","))
    if len(vals) != 3:
        raise ConfigError(f"expected three comma-separated numbers, got {text!r}")
    return vals  # type: ignore[return-value]


def _tensor(raw: dict[str, Any]) -> TensorSpec:
    dims = tuple(int(d) for d in raw.get("dims", ()))
    return TensorSpec(name=str(raw["name"]), data_type=str(raw.get("data_type", "TYPE_FP32")), dims=dims)


def spec_from_config(config: dict[str, Any], labels: tuple[str, ...] | None = None,
                     versions: tuple[int, ...] = ()) -> ModelSpec:
    """Build a spec from a model config dict (``pbtxt.parse`` output or Triton's JSON)."""
    name = str(config.get("name", ""))
    params = {k: str(v.get("string_value", "")) for k, v in (config.get("parameters") or {}).items()}
    task = params.get("task")
    if task not in TASKS:
        raise ConfigError(f"model {name!r}: parameters.task must be one of {TASKS}, got {task!r}")
    inputs = tuple(_tensor(t) for t in config.get("input", ()))
    outputs = tuple(_tensor(t) for t in config.get("output", ()))
    if not inputs or not outputs:
        raise ConfigError(f"model {name!r}: config declares no input or no output")
    first = inputs[0]
    if first.data_type == "TYPE_UINT8" and len(first.dims) == 3 and first.dims[-1] == 3:
        layout, hw = "uint8_nhwc", first.dims[:2]
    elif len(first.dims) == 3 and first.dims[0] == 3:
        layout, hw = "float_nchw", first.dims[1:]
    else:
        raise ConfigError(f"model {name!r}: input {first.name} must be uint8 [H,W,3] or float [3,H,W], "
                          f"got {first.data_type} {list(first.dims)}")
    input_size = None if any(d < 0 for d in hw) else (int(hw[0]), int(hw[1]))
    resize_size = params.get("resize_size")
    prep = PreprocessConfig(
        input_size=input_size,
        resize=params.get("resize", "stretch" if input_size else "none"),  # type: ignore[arg-type]
        resize_size=int(resize_size) if resize_size else None,
        mean=_floats(params.get("mean", "0,0,0")),
        std=_floats(params.get("std", "1,1,1")),
        channel_order=params.get("channel_order", "RGB"),  # type: ignore[arg-type]
        layout=layout,  # type: ignore[arg-type]
        pad_value=int(params.get("letterbox_pad", "114")),
    )
    batching = config.get("dynamic_batching") or {}
    return ModelSpec(
        name=name, task=task, platform=str(config.get("platform", config.get("backend", ""))),  # type: ignore[arg-type]
        max_batch_size=int(config.get("max_batch_size", 0)), inputs=inputs, outputs=outputs,
        preprocess=prep, parameters=params, labels=labels, versions=versions,
        max_queue_delay_us=int(batching.get("max_queue_delay_microseconds", 0)),
    )


def read_labels(path: Path) -> tuple[str, ...]:
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def label_file(config: dict[str, Any]) -> str | None:
    for out in config.get("output", ()):
        if out.get("label_filename"):
            return str(out["label_filename"])
    return None


def model_versions(model_dir: Path) -> tuple[int, ...]:
    """Numeric version folders, ascending. Triton ignores non-numeric ones; so do we (staging dirs)."""
    return tuple(sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()))


def select_versions(config: dict[str, Any], available: tuple[int, ...]) -> tuple[int, ...]:
    """Apply the config's ``version_policy`` the way Triton does (default: latest 1)."""
    policy = config.get("version_policy") or {"latest": {"num_versions": 1}}
    if "all" in policy:
        return available
    if "specific" in policy:
        wanted = {int(v) for v in policy["specific"].get("versions", ())}
        return tuple(v for v in available if v in wanted)
    n = int(policy.get("latest", {}).get("num_versions", 1))
    return available[-n:] if n > 0 else ()


@dataclass(frozen=True)
class RepositoryModel:
    spec: ModelSpec
    directory: Path
    config: dict[str, Any]


def read_model(model_dir: Path) -> RepositoryModel:
    config_path = model_dir / "config.pbtxt"
    if not config_path.is_file():
        raise ConfigError(f"{model_dir} has no config.pbtxt")
    config = pbtxt.parse(config_path.read_text(encoding="utf-8"))
    config.setdefault("name", model_dir.name)
    lf = label_file(config)
    labels = read_labels(model_dir / lf) if lf and (model_dir / lf).is_file() else None
    versions = select_versions(config, model_versions(model_dir))
    return RepositoryModel(spec_from_config(config, labels, versions), model_dir, config)


def scan(repository: Path) -> list[Path]:
    """Model folders: those with a config.pbtxt, skipping hidden ones (export staging)."""
    if not repository.is_dir():
        return []
    return sorted(p for p in repository.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "config.pbtxt").is_file())
