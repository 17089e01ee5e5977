"""One export, step by step: load -> ONNX -> parity proof -> atomic version in the repository."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visiongate.service.repository import spec_from_config

from .onnx import export_onnx
from .parity import ParityError, ParityReport, ProofOptions, prove
from .reexport import merge_config
from .repository import build_config, canonical, existing_config, remove_stale_staging, staged_version
from .sources.base import LoadedModel

logger = logging.getLogger("visiongate.export")

#: items per batch written into config.pbtxt, by task. On CPU batching buys little (README,
#: "Performance"); on a GPU raise it with --max-batch-size.
DEFAULT_MAX_BATCH = {"classify": 8, "detect": 4, "super_resolve": 4, "segment": 4}


@dataclass(frozen=True)
class ExportResult:
    name: str
    version: int
    directory: Path
    #: the float32 ONNX vs PyTorch proof
    report: ParityReport
    #: the figures of the check that decided publication, and what it compared (a variant's own check
    #: for fp16/TensorRT; otherwise the proof above)
    checked: dict[str, float] | None = None
    checked_what: str = "ONNX vs PyTorch"

    @property
    def summary(self) -> dict[str, float]:
        return self.checked if self.checked is not None else self.report.metrics


def publish_config(name: str, repository: Path, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the hand edits of the model's current config kept (reported in the log)."""
    merged = merge_config(canonical(new), existing_config(repository, name))
    merged.report(name)
    return merged.config


def batch_size(name: str, repository: Path, task: str, given: int | None) -> int:
    """``--max-batch-size``, else what the model's config already says, else the task's default."""
    if given:
        return given
    current = existing_config(repository, name)
    if current and int(current.get("max_batch_size", 0)) > 0:
        return int(current["max_batch_size"])
    return DEFAULT_MAX_BATCH[task]


def _example(loaded: LoadedModel) -> torch.Tensor:
    h, w = loaded.card.input_size or (64, 64)
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, size=(2, h, w, 3), dtype=np.uint8))


def export_model(loaded: LoadedModel, name: str, repository: Path, *, max_batch_size: int | None = None,
                 progress: bool = True, proof: ProofOptions | None = None) -> ExportResult:
    torch.manual_seed(0)  # reproducible: nothing random reaches the graph, but be sure
    card = loaded.card
    mbs = batch_size(name, repository, card.task, max_batch_size)
    config = publish_config(name, repository, build_config(name, card, max_batch_size=mbs))
    spec = spec_from_config(config, labels=card.labels)
    steps = ["onnx", "parity", "publish"]
    bar = _progress(steps, name, progress)
    remove_stale_staging(repository)
    with staged_version(repository, name) as stage:
        onnx_path = stage.directory / "model.onnx"
        reference = export_onnx(loaded, onnx_path, _example(loaded))
        bar("parity")
        report = prove(card.task, reference, onnx_path, spec, proof)
        report.details["provenance"] = card.provenance
        if loaded.random_weights:
            report.details["weights"] = "RANDOM initialisation (--random-weights): its predictions mean nothing"
        report.write(stage.directory / "parity.json")
        if not report.passed:
            raise ParityError(f"{name}: {_failure(report)}: {report.metrics} "
                              f"(thresholds {report.thresholds}); no version written")
        bar("publish")
        version = stage.commit(config, card.labels)
    bar(None)
    logger.info("exported %s version %d: %s", name, version, report.metrics)
    return ExportResult(name, version, repository / name / str(version), report)


def _failure(report: ParityReport) -> str:
    """What the failed proof means and what the user can do about it."""
    if "worse_than_bicubic" in report.details:
        return (f"the model is {report.details['worse_than_bicubic']} (are these the trained weights? "
                "--force publishes it anyway)")
    if "empty" in report.details:
        return (f"{report.details['empty']} (use --images DIR with photos of your classes, or "
                "--allow-empty-detections)")
    return "ONNX does not match PyTorch"


def _progress(steps: list[str], name: str, enabled: bool):  # type: ignore[no-untyped-def]
    """A tqdm bar over the export steps (silent when disabled or tqdm is missing)."""
    try:
        from tqdm import tqdm
    except ImportError:
        enabled = False
    if not enabled:
        return lambda step: None
    bar = tqdm(total=len(steps), desc=f"{name}: {steps[0]}", unit="step", leave=True)

    def advance(step: str | None) -> None:
        bar.update(1)
        if step is None:
            bar.close()
        else:
            bar.set_description(f"{name}: {step}")

    return advance
