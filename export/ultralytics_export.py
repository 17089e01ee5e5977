"""``visiongate export --arch yolo --checkpoint best.pt``: an Ultralytics YOLO detector or instance segmenter
through Ultralytics' own exporter.

Ultralytics is AGPL-3.0: it is an export-time tool here, imported only by this module and only when
the user runs this command; the gateway never needs it (it serves the ONNX file). Install it into the
environment that runs ``visiongate export``: ``pip install ultralytics``.

Ultralytics ``.pt`` files are whole pickles that Ultralytics loads with code execution: export only
checkpoints you trust (this is said on every run).

The graph is Ultralytics' own ONNX (input ``images`` float32 NCHW RGB in [0, 1], letterboxed with
pad 114, centred). The config names the output head (``yolov8`` for ``[N, 4+C, A]``, ``end2end`` for
NMS-free ``[N, K, 6]``; a ``segment`` checkpoint: ``yolo_seg`` for ``[N, 4+C+32, A]`` and the prototypes
``[N, 32, h, w]``, served on ``/v1/segment``, the parameters the gateway infers for the same file
dropped in bare), and the proof compares Ultralytics' PyTorch outputs with the ONNX outputs on the
proof photos, pre-processed by the gateway's own code. A segmenter's proof also compares the
instances of Ultralytics' own ``predict`` (its NMS and ``process_mask``, on the same input tensors)
with the gateway's post-processing of the ONNX outputs: every instance paired by class and box,
mask IoU >= 0.99 inside each box. When nothing scores above the configured threshold (an untrained
checkpoint), that comparison runs at a lower threshold placed in a gap between scores, and says so.
"""

from __future__ import annotations

import argparse
import ast
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .parity import ParityReport, ProofOptions, model_inputs
from .pipeline import batch_size, publish_config
from .repository import remove_stale_staging, staged_version

logger = logging.getLogger("visiongate.export")

INSTALL = ("--arch yolo needs the ultralytics package (AGPL-3.0; an export-time tool, never needed by the gateway): "
           "pip install ultralytics  # into the environment that runs `visiongate export`")
TRUST = ("note: Ultralytics .pt checkpoints are full pickles that Ultralytics loads with code execution; "
         "export only checkpoints you trust")


def yolo_config(name: str, size: tuple[int, int], outputs: list[tuple[int, ...]], names: dict[int, str],
                max_batch_size: int, task: str = "detect") -> dict[str, Any]:
    """config.pbtxt for an Ultralytics ONNX with outputs ``[N, *shape]`` (detect: one; segment: two)."""
    params = {
        "task": task, "resize": "letterbox", "letterbox_pad": "114", "letterbox_align": "center",
        "interpolation": "bilinear", "channel_order": "RGB", "normalization": "none", "input_range": "0-1",
        "mean": "0,0,0", "std": "1,1,1",
        # Ultralytics' own predict defaults (conf 0.25, iou 0.7, max_det 300)
        "score_threshold": "0.25", "iou_threshold": "0.7", "max_detections": "300",
    }
    if task == "segment":
        params.update(segment_kind="instance", head="yolo_seg", mask_threshold="0.5")
    else:
        output = outputs[0]
        params["head"] = "end2end" if len(output) == 2 and output[1] == 6 else "yolov8"
    tensors = [{"name": f"output{i}", "data_type": "TYPE_FP32", "dims": list(shape)}
               for i, shape in enumerate(outputs)]
    tensors[0]["label_filename"] = "labels.txt"
    return {
        "name": name,
        "platform": "onnxruntime_onnx",
        "max_batch_size": max_batch_size,
        "input": [{"name": "images", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": [3, *size]}],
        "output": tensors,
        "dynamic_batching": {"max_queue_delay_microseconds": 500},
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }


def _candidates(out: np.ndarray, head: str, threshold: float, classes: int | None = None) -> int:
    scores = out[..., 4] if head == "end2end" else out[:, 4:4 + classes if classes else None, :].max(axis=1)
    return int((scores >= threshold).sum())


def _raw_parity(expected: list[np.ndarray], got: list[np.ndarray], head: str,
                classes: int) -> tuple[dict[str, float], dict[str, float]]:
    """Max |difference| of each part of the raw outputs (boxes, scores; a segmenter's mask
    coefficients and prototypes), each against 1e-3 of that part's largest magnitude (scores: 1e-3)."""
    parts: dict[str, tuple[int, Any]]
    if head == "end2end":
        parts = {"box": (0, np.s_[..., :4]), "score": (0, np.s_[..., 4])}
    else:
        parts = {"box": (0, np.s_[:, :4, :]), "score": (0, np.s_[:, 4:4 + classes, :])}
        if len(expected) > 1:
            parts.update(coefficient=(0, np.s_[:, 4 + classes:, :]), prototype=(1, np.s_[...]))
    metrics: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    for part, (i, cut) in parts.items():
        want, have = expected[i][cut], got[i][cut]
        metrics[f"max_abs_{part}_diff"] = float(np.abs(want - have).max()) if want.size else 0.0
        scale = 1.0 if part == "score" or not want.size else max(1.0, float(np.abs(want).max()))
        thresholds[f"max_abs_{part}_diff"] = 1e-3 * scale
    return metrics, thresholds


def export_yolo(checkpoint: Path, name: str, repository: Path, *, imgsz: tuple[int, int] | None = None,
                max_batch_size: int | None = None, proof: ProofOptions | None = None) -> tuple[int, ParityReport]:
    """Export, prove and publish; returns (version, proof).

    Raises:
        ValueError: neither a detection nor a segmentation checkpoint, or the proof failed (no version
            is written).
    """
    import onnxruntime as ort
    import torch
    import ultralytics
    from ultralytics.models import YOLO

    from visiongate.service.repository import spec_from_config

    proof = proof or ProofOptions()
    with tempfile.TemporaryDirectory(prefix="visiongate-yolo-") as scratch:
        local = Path(scratch) / checkpoint.name
        shutil.copy2(checkpoint, local)  # Ultralytics writes the ONNX beside the checkpoint
        model = YOLO(str(local))
        task = str(model.task)
        if task not in ("detect", "segment"):
            raise ValueError(f"{checkpoint.name} is an Ultralytics {task!r} model; detect and segment are exported")
        default = int(model.overrides.get("imgsz") or 640)
        size: tuple[int, int] = imgsz or (default, default)
        onnx_path = Path(model.export(format="onnx", imgsz=list(size), dynamic=True, simplify=False, opset=17,
                                      verbose=False))
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        # Ultralytics writes ``names`` as a Python dict literal
        names = {int(k): str(v) for k, v in ast.literal_eval(meta["names"]).items()} if "names" in meta \
            else {int(k): str(v) for k, v in model.names.items()}
        probe = session.run(None, {"images": np.zeros((1, 3, *size), np.float32)})
        if task == "segment" and (len(probe) != 2 or probe[1].ndim != 4):
            raise ValueError(f"{checkpoint.name}: an Ultralytics segment export answers [N, 4+C+P, A] and "
                             f"prototypes [N, P, h, w], this one {[list(p.shape) for p in probe]} (end-to-end "
                             f"segment exports are not served)")
        mbs = batch_size(name, repository, task, max_batch_size)
        config = publish_config(name, repository, yolo_config(name, size, [tuple(p.shape[1:]) for p in probe], names,
                                                              mbs, task))
        labels = tuple(names[i] for i in range(len(names)))
        spec = spec_from_config(config, labels=labels)
        photos = proof.photos_for(task)
        x = model_inputs(spec, photos)
        runs = [session.run(None, {"images": x[i:i + 1]}) for i in range(len(x))]
        got = [np.concatenate(parts) for parts in zip(*runs, strict=True)]
        net = model.model.float().eval()  # type: ignore[union-attr]  # declared str | None; loaded, it is the torch module
        with torch.no_grad():
            ref = net(torch.from_numpy(x))
        first = ref[0] if isinstance(ref, tuple | list) else ref
        expected = [t.numpy() for t in (first[:2] if isinstance(first, tuple | list) else [first])]
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        head = params["head"]
        threshold = float(params["score_threshold"])
        found = _candidates(got[0], head, threshold, len(names))
        metrics, thresholds = _raw_parity(expected, got, head, len(names))
        metrics["candidates_above_threshold"] = float(found)
        details: dict[str, Any] = {"provenance": f"{checkpoint.name} via ultralytics {ultralytics.__version__} "
                                                 "(AGPL-3.0, export-time only)", "head": head}
        passed = all(metrics[k] <= t for k, t in thresholds.items())
        if task == "segment":
            from .ultralytics_seg_proof import compare_instances

            seg = compare_instances(YOLO(str(local)), x, got, params, len(names))
            metrics.update(seg.metrics)
            details.update(seg.details)
            if seg.passed or not (found == 0 and proof.allow_empty_detections and "no_instances" in seg.details):
                thresholds.update(seg.thresholds)
                passed = passed and seg.passed
        if found == 0:
            details["empty"] = (f"no box scores >= {threshold} on {len(photos)} photos: the proof compared "
                                "no detection at the served threshold" + (" (allowed by --allow-empty-detections)"
                                                                          if proof.allow_empty_detections else ""))
            if not proof.allow_empty_detections:
                passed = False
                thresholds["candidates_above_threshold"] = 1.0
        report = ParityReport(task=task, passed=passed, photos=[p.name for p in photos], metrics=metrics,
                              thresholds=thresholds, details=details)
        if not passed:
            raise ValueError(f"{name}: the ONNX proof failed: {metrics} (thresholds {thresholds}); "
                             "no version written" + ("; pass --allow-empty-detections if the photos hold none of "
                                                     "your classes, or --images DIR with photos that do"
                                                     if found == 0 else ""))
        remove_stale_staging(repository)
        with staged_version(repository, name) as stage:
            shutil.copy2(onnx_path, stage.directory / "model.onnx")
            report.write(stage.directory / "parity.json")
            version = stage.commit(config, labels)
    return version, report


def run_yolo(args: argparse.Namespace) -> int:
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        print(INSTALL, file=sys.stderr)
        return 1
    if args.checkpoint is None:
        print("--arch yolo needs --checkpoint FILE.pt (an Ultralytics detection or segmentation checkpoint)",
              file=sys.stderr)
        return 2
    if args.format != "onnx" or args.fp16:
        print("--arch yolo exports float32 ONNX only", file=sys.stderr)
        return 2
    print(TRUST, file=sys.stderr)
    from .cli import _proof_options

    name = args.name or Path(args.checkpoint).stem
    try:
        version, report = export_yolo(Path(args.checkpoint), name, args.repository,
                                      imgsz=(args.input_size[0], args.input_size[1]) if args.input_size else None,
                                      max_batch_size=args.max_batch_size, proof=_proof_options(args))
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"yolo: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: version {version} written to {args.repository / name / str(version)} (parity ONNX vs "
          f"PyTorch: {', '.join(f'{k}={v:.3g}' for k, v in report.metrics.items())})")
    return 0
