"""Re-exporting into an existing model: the new graph's facts replace the old ones, hand edits stay.

A config.pbtxt that a person has tuned (``version_policy``, ``instance_group``, ``dynamic_batching``,
thresholds, extra parameters) must survive ``visiongate export`` of a new version. Fields split in two:

- owned by the graph (tensor names, dtypes, dims, format, platform, and the pre-processing the graph
  was built with: ``task``, ``resize``, ``mean``, ...): the new export's values replace the old ones,
  and each replacement is reported;
- everything else: the existing value is kept, and each kept difference is reported.

One combination cannot be kept consistently and is refused: a hand-set ``backend`` when the new export
changes the platform (Triton would load the new model file with the old backend).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("visiongate.export")

#: top-level fields the export writes from the graph
OWNED_FIELDS = ("name", "platform", "max_batch_size", "input", "output")
#: tensor fields that describe the graph; any other field of a same-named tensor (``reshape``, ...) is kept
OWNED_TENSOR_FIELDS = ("name", "data_type", "dims", "format", "label_filename")
#: parameters fixed by how the model was built and trained (what the graph does to pixels)
OWNED_PARAMETERS = frozenset({
    "task", "resize", "resize_size", "mean", "std", "channel_order", "normalization", "interpolation",
    "crop_pct", "layout", "letterbox_pad", "scale", "tile_overlap", "precision", "output_activation",
    "head", "letterbox_align", "input_range",
})


class ConfigConflict(ValueError):
    """A hand edit that the new export cannot keep; the message names it."""


@dataclass
class Merged:
    config: dict[str, Any]
    kept: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)

    def report(self, name: str) -> None:
        for line in self.kept:
            logger.info("%s: kept hand-edited %s", name, line)
        for line in self.replaced:
            logger.warning("%s: replaced %s", name, line)


def _params(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config.get("parameters") or {})


def _value(param: Any) -> str:
    return str(param.get("string_value", "")) if isinstance(param, dict) else str(param)


def _tensors(new: list[dict[str, Any]], old: list[dict[str, Any]], kind: str, merged: Merged) -> list[dict[str, Any]]:
    by_name = {str(t.get("name")): t for t in old}
    out = []
    for tensor in new:
        previous = by_name.pop(str(tensor["name"]), {})
        extra = {k: v for k, v in previous.items() if k not in OWNED_TENSOR_FIELDS}
        if extra:
            merged.kept.append(f"{kind} {tensor['name']}: {', '.join(sorted(extra))}")
        for key in ("data_type", "dims", "format"):
            if key in previous and previous[key] != tensor.get(key):
                merged.replaced.append(f"{kind} {tensor['name']}.{key}: {previous[key]} -> {tensor.get(key)} "
                                       "(the new graph's)")
        out.append({**tensor, **extra})
    for name in by_name:
        merged.replaced.append(f"{kind} {name}: not in the new graph, removed")
    return out


def merge_config(new: dict[str, Any], existing: dict[str, Any] | None) -> Merged:
    """The config to publish: ``new`` (from the export) with the hand edits of ``existing`` kept.

    Raises:
        ConfigConflict: a hand edit that cannot be kept with the new graph.
    """
    if not existing:
        return Merged(new)
    merged = Merged({})
    config: dict[str, Any] = dict(new)
    if "backend" in existing and existing.get("platform") != new.get("platform"):
        raise ConfigConflict(
            f"config.pbtxt sets backend: {existing['backend']!r} and this export changes the platform "
            f"{existing.get('platform')!r} -> {new.get('platform')!r}; remove the backend line (or export into a "
            "new model name) and run the export again")
    for key, value in existing.items():
        if key in OWNED_FIELDS or key == "parameters":
            continue
        if key not in new or value != new[key]:
            merged.kept.append(key if key not in new else f"{key} (the export would write {new[key]})")
        config[key] = value
    for key in ("platform", "max_batch_size"):
        if key in existing and existing[key] != new.get(key):
            merged.replaced.append(f"{key}: {existing[key]} -> {new.get(key)}")
    config["input"] = _tensors(list(new.get("input", ())), list(existing.get("input", ())), "input", merged)
    config["output"] = _tensors(list(new.get("output", ())), list(existing.get("output", ())), "output", merged)
    params = _params(new)
    for key, old in _params(existing).items():
        if key not in params:
            params[key] = old
            merged.kept.append(f"parameters.{key} = {_value(old)!r}")
        elif _value(old) != _value(params[key]):
            if key in OWNED_PARAMETERS:
                merged.replaced.append(f"parameters.{key}: {_value(old)!r} -> {_value(params[key])!r} "
                                       "(fixed by the new graph)")
            else:
                merged.kept.append(f"parameters.{key} = {_value(old)!r} (the export would write "
                                   f"{_value(params[key])!r})")
                params[key] = old
    config["parameters"] = params
    merged.config = config
    return merged
