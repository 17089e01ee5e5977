"""The one reader of an exported version's proof, ``<model>/<version>/parity.json``.

The export stage writes two shapes (see ``export/parity.py`` and ``export/variants.py``):
- a float32 ONNX export: ``{"task", "passed", "photos", "metrics", "thresholds", "details", ...}``;
- a variant (fp16 ONNX, TensorRT): ``{"variant": {"format", "precision", "passed", "metrics", ...},
  "float32_onnx_vs_pytorch": <the first shape>}``; the variant's own check decided publication.

``read_proof`` turns either into one flat summary, so the gateway's ``/v1/models``, ``visiongate
models`` and the export CLI show the same figures. Pure stdlib: the gateway imports it without torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILENAME = "parity.json"


@dataclass(frozen=True)
class ProofSummary:
    passed: bool
    task: str | None
    #: what was compared, e.g. "ONNX vs PyTorch" or "onnx fp16 vs float32 ONNX"
    checked: str
    metrics: dict[str, float] = field(default_factory=dict)
    #: reasons a proof was weaker than usual and still published (e.g. allowed empty detections)
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Flat, for JSON: ``{"passed", "task", "checked", <metric>: value, ...}``; ``notes`` only when any."""
        out: dict[str, Any] = {"passed": self.passed, "task": self.task, "checked": self.checked, **self.metrics}
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def line(self) -> str:
        """One line for a terminal: ``parity ok (fp16 vs float32 ONNX) a=1 b=2``."""
        figures = " ".join(f"{k}={v:.3g}" for k, v in self.metrics.items())
        return f"parity {'ok' if self.passed else 'FAILED'} ({self.checked}) {figures}".rstrip()


def _metrics(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    out = {}
    for key, value in raw.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[str(key)] = float(value)
    return out


def _notes(details: Any) -> tuple[str, ...]:
    if not isinstance(details, dict):
        return ()
    return tuple(str(details[k]) for k in ("empty", "worse_than_bicubic", "weights") if details.get(k))


def summarise(report: dict[str, Any]) -> ProofSummary:
    """Either shape of ``parity.json`` (already parsed) -> one summary.

    Raises:
        ValueError: a document of neither shape.
    """
    variant = report.get("variant")
    if isinstance(variant, dict):
        base = report.get("float32_onnx_vs_pytorch")
        base_passed = bool(base.get("passed")) if isinstance(base, dict) else True
        what = " ".join(str(variant[k]) for k in ("format", "precision") if variant.get(k))
        return ProofSummary(
            passed=bool(variant.get("passed")) and base_passed,
            task=base.get("task") if isinstance(base, dict) else None,
            checked=f"{what or 'variant'} vs float32 ONNX",
            metrics=_metrics(variant.get("metrics")),
            notes=_notes(base.get("details")) if isinstance(base, dict) else (),
        )
    if "passed" not in report:
        raise ValueError("not a visiongate parity report (no 'passed' and no 'variant')")
    return ProofSummary(passed=bool(report["passed"]), task=report.get("task"), checked="ONNX vs PyTorch",
                        metrics=_metrics(report.get("metrics")), notes=_notes(report.get("details")))


def read_proof(version_dir: Path) -> ProofSummary | None:
    """The proof of one version folder; ``None`` when it has none or it cannot be read."""
    try:
        return summarise(json.loads((Path(version_dir) / FILENAME).read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError, TypeError):
        return None
