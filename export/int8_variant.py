"""``<name>_int8``: an INT8 model made from a float32 model in the repository, published only with a
passing accuracy proof.

The proof runs both models on held-back real photographs (none used for calibration, not even a crop
of one), decoded exactly as the gateway decodes them, and compares their answers: top-1/top-5
agreement and KL divergence for classifiers, box recall and score drift for detectors
(``export.accuracy``). Beside it, the float32 model is compared with itself fed full decodes instead
of the gateway's DCT-scaled ones: the loss the gateway already accepts, for scale. A proof under its
thresholds raises ``Int8ProofFailed`` and writes nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from visiongate.service.repository import ModelSpec, read_model

from . import photo_sets
from .accuracy import classifier_agreement, detector_agreement, run_batched
from .calibration import model_inputs
from .int8 import Int8Options, Int8ProofFailed, Thresholds, default_options, quantize
from .repository import remove_stale_staging, staged_version

logger = logging.getLogger("visiongate.export")

SUFFIX = "_int8"
#: calibration rows at most (evenly spaced over the calibration samples)
MAX_CALIBRATION = 256
BATCH = 8


@dataclass(frozen=True)
class Int8Result:
    name: str
    version: int
    directory: Path
    metrics: dict[str, float]


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _evenly(items: list[photo_sets.Sample], limit: int | None) -> list[photo_sets.Sample]:
    if limit is None or len(items) <= limit:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, limit)]


def _outputs(session: ort.InferenceSession, spec: ModelSpec, x: np.ndarray) -> list[np.ndarray]:
    names = [t.name for t in spec.outputs]
    return run_batched(lambda b: session.run(names, {spec.input.name: b}), x, BATCH)


def _compare(spec: ModelSpec, reference: list[np.ndarray], candidate: list[np.ndarray],
             thresholds: Thresholds) -> dict[str, float]:
    if spec.task == "classify":
        return classifier_agreement(reference[0], candidate[0], spec.param("output_activation", "softmax"),
                                    decided_margin=thresholds.decided_margin)
    return detector_agreement((reference[0], reference[1]), (candidate[0], candidate[1]), spec)


def _verdict(task: str, int8: dict[str, float], decode: dict[str, float], thresholds: Thresholds
             ) -> tuple[bool, dict[str, float], dict[str, float]]:
    """(passed, headline metrics, thresholds) for parity.json."""
    if task == "classify":
        keys = ("top1_agreement_decided", "top1_agreement", "top5_agreement", "mean_kl")
        limits = {"top1_agreement_decided": thresholds.min_top1}
        passed = int8["top1_agreement_decided"] >= thresholds.min_top1
    else:
        keys = ("box_recall", "box_precision", "mean_score_drift", "max_score_drift")
        limits = {"box_recall": thresholds.min_box_recall}
        passed = int8["box_recall"] >= thresholds.min_box_recall
    headline = {k: int8[k] for k in keys} | {f"fp32_decode_{k}": decode[k] for k in keys}
    return passed, headline, limits


def _set_summary(samples: list[photo_sets.Sample], photos: list[photo_sets.Photo]) -> dict[str, Any]:
    by_id = {p.id: p for p in photos}
    used = {s.photo for s in samples}
    return {
        "images": len(samples),
        "photographs": len(used),
        "crops": sum(1 for s in samples if s.crop is not None),
        "sources": dict(Counter(by_id[p].source for p in used)),
        "licences": dict(Counter(by_id[p].licence for p in used)),
        "photograph_ids": sorted(used),
    }


def export_int8(repository: Path, name: str, *, calibration_dir: Path | None = None,
                thresholds: Thresholds | None = None, options: Int8Options | None = None,
                photo_cache: Path = photo_sets.DEFAULT_CACHE, heldback_limit: int | None = None,
                calibration_limit: int = MAX_CALIBRATION) -> Int8Result:
    """Quantize the newest version of ``repository/name`` into ``repository/name_int8`` (next version).

    ``heldback_limit`` (tests only) judges an evenly spaced subset of the held-back samples.
    """
    started = time.perf_counter()
    thresholds = thresholds or Thresholds()
    source = read_model(repository / name)
    spec = source.spec
    if spec.task not in ("classify", "detect"):
        raise ValueError(f"{name}: INT8 export covers classifiers and detectors, not {spec.task}")
    if not spec.versions:
        raise ValueError(f"{name}: no version to quantize in {repository / name}")
    parent_version = spec.versions[-1]
    fp32 = repository / name / str(parent_version) / "model.onnx"
    if spec.platform != "onnxruntime_onnx" or not fp32.is_file():
        raise ValueError(f"{name}: INT8 export needs an ONNX model (found platform {spec.platform})")
    if spec.param("precision", "fp32") != "fp32":
        raise ValueError(f"{name}: version {parent_version} is {spec.param('precision', '')}, not float32")
    options = options or default_options(spec.task)

    builtin = photo_sets.builtin_photos(photo_cache)
    if calibration_dir is not None:
        calibration, heldback = photo_sets.folder_photos(calibration_dir), builtin
        digests = {hashlib.sha256(p.data).digest() for p in calibration}
        heldback = [p for p in heldback if hashlib.sha256(p.data).digest() not in digests]
    else:
        calibration, heldback = photo_sets.split(builtin)
    cal_samples = _evenly(photo_sets.samples(calibration), calibration_limit)
    held_samples = _evenly(photo_sets.samples(heldback), heldback_limit)
    xc = model_inputs(spec, cal_samples)
    x_gateway = model_inputs(spec, held_samples)
    x_full = model_inputs(spec, held_samples, gateway_decode=False)

    target = name + SUFFIX
    config = copy.deepcopy(source.config)
    config["name"] = target
    params = config.setdefault("parameters", {})
    params["precision"] = {"string_value": "int8"}
    params["int8_parent"] = {"string_value": f"{name}/{parent_version}"}
    remove_stale_staging(repository)
    with staged_version(repository, target) as stage:
        model_path = stage.directory / "model.onnx"
        facts = quantize(fp32, model_path, xc, options, input_name=spec.input.name)
        parent = _session(fp32)
        reference = _outputs(parent, spec, x_gateway)
        int8 = _compare(spec, reference, _outputs(_session(model_path), spec, x_gateway), thresholds)
        decode = _compare(spec, _outputs(parent, spec, x_full), reference, thresholds)
        passed, metrics, limits = _verdict(spec.task, int8, decode, thresholds)
        report = {
            "task": spec.task, "passed": passed, "metrics": metrics, "thresholds": limits,
            "details": {
                "kind": "int8 accuracy proof against the float32 parent on held-back real photographs",
                "parent": {"model": name, "version": parent_version,
                           "sha256": hashlib.sha256(fp32.read_bytes()).hexdigest()},
                "int8_vs_fp32": int8,
                "fp32_gateway_decode_vs_full_decode": decode,
                "quantization": facts,
                "thresholds": asdict(thresholds),
                "calibration": {"from": str(calibration_dir) if calibration_dir else "built-in",
                                **_set_summary(cal_samples, calibration)},
                "heldback": _set_summary(held_samples, heldback),
            },
            "onnxruntime": ort.__version__,
            "seconds": round(time.perf_counter() - started, 1),
        }
        (stage.directory / "parity.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        if not passed:
            raise Int8ProofFailed(f"{target}: INT8 does not keep float32's answers: {metrics} (thresholds {limits}); "
                                  "no version written")
        version = stage.commit(config, spec.labels)
    logger.info("exported %s version %d (INT8 of %s/%d): %s", target, version, name, parent_version, metrics)
    return Int8Result(target, version, repository / target / str(version), metrics)
