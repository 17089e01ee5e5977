"""Derived model formats: float16 ONNX and TensorRT plans, each proven against the float32 ONNX.

The chain of proof: PyTorch -> float32 ONNX (``pipeline.export_model``, the usual parity check, in a
scratch repository) -> the variant, compared with onnxruntime's float32 outputs on the same real
photos. Only a variant that passes is published, atomically, as the next version of the model.

Tolerances (relative to each output's largest magnitude): TensorRT fp32 1e-3, anything fp16 2e-2.
Classifiers must also keep the float32 top-1 on every photo whose top-1/top-2 margin exceeds it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from visiongate.service.repository import spec_from_config

from .onnx import PREPROCESS_KEY, output_names, read_metadata, write_metadata
from .parity import ParityError, ProofOptions, crop_photo, model_inputs
from .pipeline import ExportResult, batch_size, export_model, publish_config
from .repository import build_config, remove_stale_staging, staged_version
from .sources.base import LoadedModel, ModelCard

logger = logging.getLogger("visiongate.export")

Format = Literal["onnx", "tensorrt"]
SR_CROP = 64


class Fp16Unavailable(RuntimeError):
    pass


def convert_fp16(src: Path, dst: Path) -> None:
    """float32 ONNX -> float16 weights and compute; the uint8 input and float32 outputs stay as they are."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise Fp16Unavailable("--fp16 ONNX needs the onnxconverter-common package (pip install onnxconverter-common)"
                              ) from exc
    import onnx

    with warnings.catch_warnings():
        # tiny weights rounding to fp16's limits is expected; the comparison below judges the result
        warnings.filterwarnings("ignore", message=".*will be truncated to", category=UserWarning)
        # Cast stays float32 (the uint8 -> float cast keeps its type; the converter inserts casts to fp16)
        model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                                 op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, "Cast"])
    onnx.save(model, str(dst))


def variant_inputs(card: ModelCard, config: dict, proof: ProofOptions) -> np.ndarray:  # type: ignore[type-arg]
    """Real photos as the gateway feeds them: the config's resize, or centre crops for super-resolution."""
    photos = proof.photos_for(card.task)
    if card.input_size is not None:
        return model_inputs(spec_from_config(config, labels=card.labels), photos)
    return np.ascontiguousarray(np.stack([crop_photo(p, SR_CROP) for p in photos]))


@dataclass
class Comparison:
    passed: bool
    metrics: dict[str, float]
    thresholds: dict[str, float]


def compare(task: str, names: list[str], expected: list[np.ndarray], got: list[np.ndarray],
            tolerance: float) -> Comparison:
    """Max |difference| per output, relative to that output's largest |value|; top-1 for classifiers."""
    metrics: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    passed = True
    for name, e, g in zip(names, expected, got, strict=True):
        if e.shape != g.shape:
            raise ParityError(f"output {name}: shape {g.shape}, float32 ONNX gives {e.shape}")
        rel = float(np.abs(e - g).max()) / max(1.0, float(np.abs(e).max()))
        metrics[f"{name}_max_rel_diff"] = rel
        thresholds[f"{name}_max_rel_diff"] = tolerance
        passed &= rel <= tolerance
    if task == "classify":
        logits = expected[0]
        top2 = np.sort(logits, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > tolerance * max(1.0, float(np.abs(logits).max()))
        agree = expected[0].argmax(1) == got[0].argmax(1)
        metrics["top1_agreement_clear_margin"] = float(np.mean(agree[clear])) if clear.any() else 1.0
        thresholds["top1_agreement_clear_margin"] = 1.0
        passed &= bool(agree[clear].all())
    return Comparison(bool(passed), metrics, thresholds)


def export_variant(loaded: LoadedModel, name: str, repository: Path, *, fmt: Format = "onnx", fp16: bool = False,
                   max_batch_size: int | None = None, progress: bool = True,
                   proof: ProofOptions | None = None) -> ExportResult:
    """Export ``loaded`` as ONNX (fp16 optional) or a TensorRT plan into ``repository``, proven at each step."""
    proof = proof or ProofOptions()
    if fmt == "onnx" and not fp16:
        return export_model(loaded, name, repository, max_batch_size=max_batch_size, progress=progress,
                            proof=proof)
    if fmt == "tensorrt":
        from .tensorrt import require_tensorrt

        require_tensorrt()
    card = loaded.card
    mbs = batch_size(name, repository, card.task, max_batch_size)
    with tempfile.TemporaryDirectory(prefix="visiongate-fp32-") as scratch:
        base = export_model(loaded, name, Path(scratch), max_batch_size=mbs, progress=progress, proof=proof)
        fp32_onnx = base.directory / "model.onnx"
        platform = "tensorrt_plan" if fmt == "tensorrt" else "onnxruntime_onnx"
        config = build_config(name, card, max_batch_size=mbs, platform=platform)
        precision = "fp16" if fp16 else "fp32"
        config["parameters"]["precision"] = {"string_value": precision}
        config = publish_config(name, repository, config)
        x = variant_inputs(card, config, proof)
        names = output_names(card)
        session = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
        expected = [np.concatenate(chunk) for chunk in zip(*(
            session.run(names, {"image": x[i:i + mbs]}) for i in range(0, len(x), mbs)), strict=True)]
        remove_stale_staging(repository)
        with staged_version(repository, name) as stage:
            facts: dict[str, str] = {"precision": precision}
            if fmt == "tensorrt":
                from .tensorrt import build_plan, run_plan

                target = stage.directory / "model.plan"
                facts.update(build_plan(fp32_onnx, target, card, max_batch_size=mbs, fp16=fp16))
                got = run_plan(target, x, names, mbs)
                tolerance = 2e-2 if fp16 else 1e-3
            else:
                target = stage.directory / "model.onnx"
                convert_fp16(fp32_onnx, target)
                if PREPROCESS_KEY not in read_metadata(target):
                    write_metadata(target, {PREPROCESS_KEY: read_metadata(fp32_onnx)[PREPROCESS_KEY]})
                variant = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
                got = [np.concatenate(chunk) for chunk in zip(*(
                    variant.run(names, {"image": x[i:i + mbs]}) for i in range(0, len(x), mbs)), strict=True)]
                tolerance = 2e-2
            result = compare(card.task, names, expected, got, tolerance)
            report = {
                "variant": {"format": fmt, **facts, "passed": result.passed, "metrics": result.metrics,
                            "thresholds": result.thresholds, "reference": "float32 ONNX on onnxruntime CPU",
                            "inputs": [p.name for p in proof.photos_for(card.task)]},
                "float32_onnx_vs_pytorch": json.loads((base.directory / "parity.json").read_text()),
            }
            (stage.directory / "parity.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            if not result.passed:
                raise ParityError(f"{name}: {fmt} {precision} does not match the float32 ONNX: {result.metrics} "
                                  f"(thresholds {result.thresholds}); no version written")
            version = stage.commit(config, card.labels)
    logger.info("exported %s version %d as %s %s: %s", name, version, fmt, precision, result.metrics)
    return ExportResult(name, version, repository / name / str(version), base.report, checked=result.metrics,
                        checked_what=f"{fmt} {precision} vs float32 ONNX")
