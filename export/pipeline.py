"""One export, step by step: load -> ONNX -> parity proof -> atomic version in the repository."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from service.repository import spec_from_config

from .onnx import export_onnx
from .parity import ParityError, ParityReport, prove
from .repository import build_config, remove_stale_staging, staged_version
from .sources.base import LoadedModel

logger = logging.getLogger("visiongate.export")

#: items per batch written into config.pbtxt, by task. On CPU batching buys little (notes/
#: performance.md); on a GPU raise it with --max-batch-size.
DEFAULT_MAX_BATCH = {"classify": 8, "detect": 4, "super_resolve": 4, "segment": 4}


@dataclass(frozen=True)
class ExportResult:
    name: str
    version: int
    directory: Path
    report: ParityReport


def _example(loaded: LoadedModel) -> torch.Tensor:
    h, w = loaded.card.input_size or (64, 64)
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, size=(2, h, w, 3), dtype=np.uint8))


def export_model(loaded: LoadedModel, name: str, repository: Path, *, max_batch_size: int | None = None,
                 progress: bool = True) -> ExportResult:
    torch.manual_seed(0)  # reproducible: nothing random reaches the graph, but be sure
    card = loaded.card
    mbs = max_batch_size or DEFAULT_MAX_BATCH[card.task]
    config = build_config(name, card, max_batch_size=mbs)
    spec = spec_from_config(config, labels=card.labels)
    steps = ["onnx", "parity", "publish"]
    bar = _progress(steps, name, progress)
    remove_stale_staging(repository)
    with staged_version(repository, name) as stage:
        onnx_path = stage.directory / "model.onnx"
        reference = export_onnx(loaded, onnx_path, _example(loaded))
        bar("parity")
        report = prove(card.task, reference, onnx_path, spec)
        report.details["provenance"] = card.provenance
        report.write(stage.directory / "parity.json")
        if not report.passed:
            raise ParityError(f"{name}: ONNX does not match PyTorch: {report.metrics} "
                              f"(thresholds {report.thresholds}); no version written")
        bar("publish")
        version = stage.commit(config, card.labels)
    bar(None)
    logger.info("exported %s version %d: %s", name, version, report.metrics)
    return ExportResult(name, version, repository / name / str(version), report)


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
