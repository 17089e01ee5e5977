"""``visiongate export --arch yolo --checkpoint best.pt``: an Ultralytics YOLO detector through its own exporter.

Ultralytics is AGPL-3.0: it is an export-time tool here, imported only by this module and only when
the user runs this command; the gateway never needs it (it serves the ONNX file). Install it into the
environment that runs ``visiongate export``: ``pip install ultralytics``.

Ultralytics ``.pt`` files are whole pickles that Ultralytics loads with code execution: export only
checkpoints you trust (this is said on every run).

The graph is Ultralytics' own ONNX (input ``images`` float32 NCHW RGB in [0, 1], letterboxed with
pad 114, centred). The config names the output head (``yolov8`` for ``[N, 4+C, A]``, ``end2end`` for
NMS-free ``[N, K, 6]``), and the proof compares Ultralytics' PyTorch outputs with the ONNX outputs on the
proof photos, pre-processed by the gateway's own code.
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


def yolo_config(name: str, size: tuple[int, int], output: tuple[int, ...], names: dict[int, str],
                max_batch_size: int) -> dict[str, Any]:
    """config.pbtxt for an Ultralytics detection ONNX with output ``[N, *output]``."""
    head = "end2end" if len(output) == 2 and output[1] == 6 else "yolov8"
    params = {
        "task": "detect", "head": head, "resize": "letterbox", "letterbox_pad": "114", "letterbox_align": "center",
        "interpolation": "bilinear", "channel_order": "RGB", "normalization": "none", "input_range": "0-1",
        "mean": "0,0,0", "std": "1,1,1",
        # Ultralytics' own predict defaults (conf 0.25, iou 0.7, max_det 300)
        "score_threshold": "0.25", "iou_threshold": "0.7", "max_detections": "300",
    }
    return {
        "name": name,
        "platform": "onnxruntime_onnx",
        "max_batch_size": max_batch_size,
        "input": [{"name": "images", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": [3, *size]}],
        "output": [{"name": "output0", "data_type": "TYPE_FP32", "dims": list(output),
                    "label_filename": "labels.txt"}],
        "dynamic_batching": {"max_queue_delay_microseconds": 500},
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }


def _candidates(out: np.ndarray, head: str, threshold: float) -> int:
    scores = out[..., 4] if head == "end2end" else out[:, 4:, :].max(axis=1)
    return int((scores >= threshold).sum())


def export_yolo(checkpoint: Path, name: str, repository: Path, *, imgsz: tuple[int, int] | None = None,
                max_batch_size: int | None = None, proof: ProofOptions | None = None) -> tuple[int, ParityReport]:
    """Export, prove and publish; returns (version, proof).

    Raises:
        ValueError: not a detection checkpoint, or the proof failed (no version is written).
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
        if model.task != "detect":
            raise ValueError(f"{checkpoint.name} is an Ultralytics {model.task!r} model; only detect is exported")
        default = int(model.overrides.get("imgsz") or 640)
        size: tuple[int, int] = imgsz or (default, default)
        onnx_path = Path(model.export(format="onnx", imgsz=list(size), dynamic=True, simplify=False, opset=17,
                                      verbose=False))
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        # Ultralytics writes ``names`` as a Python dict literal
        names = {int(k): str(v) for k, v in ast.literal_eval(meta["names"]).items()} if "names" in meta \
            else {int(k): str(v) for k, v in model.names.items()}
        probe = session.run(None, {"images": np.zeros((1, 3, *size), np.float32)})[0]
        mbs = batch_size(name, repository, "detect", max_batch_size)
        config = publish_config(name, repository, yolo_config(name, size, tuple(probe.shape[1:]), names, mbs))
        labels = tuple(names[i] for i in range(len(names)))
        spec = spec_from_config(config, labels=labels)
        photos = proof.photos_for("detect")
        x = model_inputs(spec, photos)
        session_out = np.concatenate([session.run(None, {"images": x[i:i + 1]})[0] for i in range(len(x))])
        net = model.model.float().eval()  # type: ignore[union-attr]  # declared str | None; loaded, it is the torch module
        with torch.no_grad():
            ref = net(torch.from_numpy(x))
        expected = (ref[0] if isinstance(ref, tuple | list) else ref).numpy()
        head = config["parameters"]["head"]["string_value"]
        threshold = float(config["parameters"]["score_threshold"]["string_value"])
        boxes = (np.s_[..., :4] if head == "end2end" else np.s_[:, :4, :])
        scores = (np.s_[..., 4] if head == "end2end" else np.s_[:, 4:, :])
        box_scale = max(1.0, float(np.abs(expected[boxes]).max()))
        box_diff = float(np.abs(expected[boxes] - session_out[boxes]).max())
        score_diff = float(np.abs(expected[scores] - session_out[scores]).max())
        found = _candidates(session_out, head, threshold)
        metrics = {"max_abs_box_diff": box_diff, "max_abs_score_diff": score_diff,
                   "candidates_above_threshold": float(found)}
        thresholds = {"max_abs_box_diff": 1e-3 * box_scale, "max_abs_score_diff": 1e-3}
        details: dict[str, Any] = {"provenance": f"{checkpoint.name} via ultralytics {ultralytics.__version__} "
                                                 "(AGPL-3.0, export-time only)", "head": head}
        passed = box_diff <= thresholds["max_abs_box_diff"] and score_diff <= thresholds["max_abs_score_diff"]
        if found == 0:
            details["empty"] = (f"no box scores >= {threshold} on {len(photos)} photos: the proof compared "
                                "no detection" + (" (allowed by --allow-empty-detections)"
                                                  if proof.allow_empty_detections else ""))
            if not proof.allow_empty_detections:
                passed = False
                thresholds["candidates_above_threshold"] = 1.0
        report = ParityReport(task="detect", passed=passed, photos=[p.name for p in photos], metrics=metrics,
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
        print("--arch yolo needs --checkpoint FILE.pt (an Ultralytics detection checkpoint)", file=sys.stderr)
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
