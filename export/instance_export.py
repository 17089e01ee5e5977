"""``visiongate export --arch torchvision:maskrcnn_resnet50_fpn[_v2]``: Mask R-CNN, proven, into the repository.

The graph (``sources/torchvision_instance.py``) takes one image without a batch axis, so the
config says ``max_batch_size: 0`` with ``image uint8 [H, W, 3]`` and the four outputs
``boxes [-1, 4]``, ``labels [-1]`` (INT64), ``scores [-1]``, ``masks [-1, 1, H, W]``; the gateway
feeds one image per call and serves it on ``/v1/segment`` with the ``pasted`` head.

The proof runs torchvision's own ``MaskRCNN.forward`` (its transform set not to resize, its NMS and
its mask pasting) and the ONNX graph on the same letterboxed photos, and pairs the detections by
label and box: box IoU >= 0.99, score difference <= 1e-3, mask IoU (at ``mask_threshold``, over
the pixels whose probability is not within 1e-3 of it) >= 0.99 per pair. torchvision pastes each
mask into its box grown and truncated to whole pixels: where the two sides' boxes, a few
thousandths of a pixel apart, truncate to different rectangles, the masks are resampled onto
grids one pixel apart; such pairs are counted and their IoU reported, not held to 0.99. A detection
may be on one side only where float rounding decides it: its score within the margin of the
graph's own score cut (0.05), or below the lowest score of a side that holds the full
``detections_per_img``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .parity import ParityReport, ProofOptions, mask_iou, model_inputs
from .repository import remove_stale_staging, staged_version
from .sources.base import ModelCard

logger = logging.getLogger("visiongate.export")

OUTPUTS = ("boxes", "labels", "scores", "masks")
OPSET = 17


def instance_config(name: str, card: ModelCard) -> dict[str, Any]:
    """config.pbtxt (as a dict) for a ``MaskRCNNGraph`` export of ``card``."""
    from .repository import _fmt

    if card.input_size is None:
        raise ValueError("a Mask R-CNN graph has a fixed input size")
    h, w = card.input_size
    params: dict[str, str] = {
        "task": "segment", "resize": card.resize, "mean": _fmt(card.mean), "std": _fmt(card.std),
        "channel_order": card.channel_order, "normalization": "in_graph", "interpolation": "bilinear",
        "input_size": f"{h},{w}", **card.extra,
    }
    return {
        "name": name,
        "platform": "onnxruntime_onnx",
        "max_batch_size": 0,
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC", "dims": [h, w, 3]}],
        "output": [
            {"name": "boxes", "data_type": "TYPE_FP32", "dims": [-1, 4]},
            {"name": "labels", "data_type": "TYPE_INT64", "dims": [-1], "label_filename": "labels.txt"},
            {"name": "scores", "data_type": "TYPE_FP32", "dims": [-1]},
            {"name": "masks", "data_type": "TYPE_FP32", "dims": [-1, 1, h, w]},
        ],
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }


def write_graph(graph: Any, card: ModelCard, example: np.ndarray, path: Path) -> None:
    """Trace ``graph`` on ``example`` (``uint8 [H, W, 3]``) into ``path``, with the card as metadata."""
    import torch

    from .onnx import PREPROCESS_KEY, preprocess_metadata, write_metadata

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings on torchvision's data-dependent shapes
        torch.onnx.export(graph, (torch.from_numpy(example),), str(path), input_names=["image"],
                          output_names=list(OUTPUTS), dynamic_axes={n: {0: "instances"} for n in OUTPUTS},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    write_metadata(path, {PREPROCESS_KEY: json.dumps(preprocess_metadata(card))})


def _pairs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], score_cut: float, limit: int,
           margin: float) -> tuple[list[tuple[int, int]], int, int]:
    """Detections paired by label and box IoU (> 0.5), best reference first: (pairs, unpaired, excused)."""
    from visiongate.service.vision.detection import box_iou

    overlap = box_iou(ref["boxes"], got["boxes"]) if len(ref["boxes"]) and len(got["boxes"]) \
        else np.zeros((len(ref["boxes"]), len(got["boxes"])))
    taken = np.zeros(len(got["boxes"]), dtype=bool)
    pairs: list[tuple[int, int]] = []
    lonely: list[tuple[float, dict[str, np.ndarray]]] = []
    for i in np.argsort(-ref["scores"], kind="stable").tolist():
        candidates = np.flatnonzero((got["labels"] == ref["labels"][i]) & ~taken)
        if candidates.size:
            j = int(candidates[np.argmax(overlap[i, candidates])])
            if overlap[i, j] > 0.5:
                taken[j] = True
                pairs.append((i, j))
                continue
        lonely.append((float(ref["scores"][i]), got))
    lonely += [(float(s), ref) for s in got["scores"][~taken].tolist()]
    unpaired = excused = 0
    for score, other in lonely:
        cut_off = len(other["scores"]) >= limit and score <= float(other["scores"].min()) + margin
        if abs(score - score_cut) <= margin or cut_off:
            excused += 1
        else:
            unpaired += 1
    return pairs, unpaired, excused


def decided_iou(expected: np.ndarray, got: np.ndarray, threshold: float, margin: float) -> float:
    """Mask IoU at ``threshold`` over the pixels float rounding cannot flip: those whose expected
    probability lies more than ``margin`` from the threshold (an untrained mask head puts most of
    its pixels near 0.5)."""
    decided = np.abs(expected - threshold) > margin
    return mask_iou((expected > threshold) & decided, (got > threshold) & decided)


def prove_instances(reference: Any, onnx_path: Path, spec: Any, options: ProofOptions,
                    score_tolerance: float = 1e-3, min_iou: float = 0.99) -> ParityReport:
    """torchvision's own forward vs ONNX Runtime on the proof photos (see the module docstring)."""
    import onnxruntime as ort
    import torch

    from .sources.torchvision_instance import grid_boxes, mask_side

    items = options.photos_for("segment")
    x = model_inputs(spec, items)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    mask_t = spec.float_param("mask_threshold", 0.5)
    serve_t = spec.float_param("score_threshold", 0.5)
    cut = float(reference.roi_heads.score_thresh)
    limit = int(reference.roi_heads.detections_per_img)
    labels = spec.labels or ()
    box_ious: list[float] = []
    score_diffs: list[float] = []
    ious: list[float] = []
    # pairs whose boxes truncate to different pixel rectangles: their masks are resampled onto another grid
    shifted: list[float] = []
    side = mask_side(reference)
    unpaired = excused = count = served = 0
    found: dict[str, list[str]] = {}
    for item, pixels in zip(items, x, strict=True):
        with torch.no_grad():
            out = reference([torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255])[0]
        ref = {k: out[k].numpy() for k in OUTPUTS}
        got = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"image": pixels}), strict=True))
        pairs, u, e = _pairs(ref, got, cut, limit, score_tolerance)
        unpaired, excused, count = unpaired + u, excused + e, count + len(ref["scores"])
        if pairs:
            from visiongate.service.vision.detection import box_iou

            ri, gi = (np.asarray(side) for side in zip(*pairs, strict=True))
            box_ious += np.diag(box_iou(ref["boxes"][ri], got["boxes"][gi])).tolist()
            score_diffs += np.abs(ref["scores"][ri] - got["scores"][gi]).tolist()
            same_grid = (grid_boxes(torch.from_numpy(ref["boxes"][ri]), side)
                         == grid_boxes(torch.from_numpy(got["boxes"][gi]), side)).all(1).numpy()
            for (i, j), same in zip(pairs, same_grid.tolist(), strict=True):
                (ious if same else shifted).append(decided_iou(ref["masks"][i, 0], got["masks"][j, 0], mask_t,
                                                               score_tolerance))
        keep = got["scores"] >= serve_t
        served += int(keep.sum())
        found[item.name] = [f"{labels[c] if c < len(labels) else c} {s:.2f}"
                            for c, s in zip(got["labels"][keep].tolist()[:10], got["scores"][keep].tolist()[:10],
                                            strict=True)]
    metrics = {"detections": float(count), "paired": float(len(ious)), "unpaired": float(unpaired),
               "excused_at_a_cut": float(excused), "min_box_iou": min(box_ious, default=1.0),
               "max_score_diff": max(score_diffs, default=0.0), "min_mask_iou": min(ious, default=1.0),
               "grid_shifted_pairs": float(len(shifted)), "min_grid_shifted_mask_iou": min(shifted, default=1.0),
               "served_instances": float(served)}
    thresholds = {"unpaired": 0.0, "min_box_iou": min_iou, "max_score_diff": score_tolerance, "min_mask_iou": min_iou}
    passed = (unpaired == 0 and metrics["min_box_iou"] >= min_iou and metrics["max_score_diff"] <= score_tolerance
              and metrics["min_mask_iou"] >= min_iou)
    details: dict[str, Any] = {"onnx_instances_at_score_threshold": found, "graph_score_cut": cut,
                               "reference": "torchvision MaskRCNN.forward (its own NMS and paste_masks_in_image)"}
    if served == 0:
        details["empty"] = (f"no instance scored >= score_threshold={serve_t} on {len(items)} photos: the proof "
                            "compared the graph's low-score detections only"
                            + (" (allowed by --allow-empty-detections)" if options.allow_empty_detections else ""))
        if not options.allow_empty_detections:
            passed = False
            thresholds["served_instances"] = 1.0
    return ParityReport(task="segment", passed=passed, photos=[p.name for p in items], metrics=metrics,
                        thresholds=thresholds, details=details)


def export_instance_segmenter(arch: str, checkpoint: Path | None, name: str, repository: Path, *,
                              num_classes: int | None = None, labels: tuple[str, ...] | None = None,
                              input_size: tuple[int, int] | None = None,
                              proof: ProofOptions | None = None) -> tuple[int, ParityReport]:
    """Load, export, prove and publish; returns (version, proof).

    Raises:
        CheckpointError: unreadable checkpoint, tensors that do not fit, labels of the wrong count.
        ParityError: the proof failed (no version is written).
    """
    import torch

    from visiongate.service.repository import spec_from_config

    from .checkpoints import read_checkpoint
    from .parity import ParityError
    from .pipeline import publish_config
    from .sources.torchvision_instance import load_instance_segmenter, torchvision_reference

    proof = proof or ProofOptions()
    state = read_checkpoint(checkpoint) if checkpoint is not None else None
    provenance = f"checkpoint {checkpoint.name}" if checkpoint is not None else "RANDOM weights (no checkpoint)"
    torch.manual_seed(0)
    loaded, model = load_instance_segmenter(arch, state, num_classes, labels, input_size, provenance)
    card = loaded.card
    config = publish_config(name, repository, instance_config(name, card))
    spec = spec_from_config(config, labels=card.labels)
    example = model_inputs(spec, proof.photos_for("segment")[:1])[0]
    with tempfile.TemporaryDirectory(prefix="visiongate-maskrcnn-") as scratch:
        onnx_path = Path(scratch) / "model.onnx"
        write_graph(loaded.module, card, example, onnx_path)
        report = prove_instances(torchvision_reference(model, card.input_size or (0, 0)), onnx_path, spec, proof)
        report.details["provenance"] = card.provenance
        if state is None:
            report.details["weights"] = "RANDOM initialisation (--random-weights): its predictions mean nothing"
        if not report.passed:
            reason = report.details.get("empty", "ONNX does not match torchvision")
            raise ParityError(f"{name}: {reason}: {report.metrics} (thresholds {report.thresholds}); "
                              "no version written")
        remove_stale_staging(repository)
        with staged_version(repository, name) as stage:
            shutil.copy2(onnx_path, stage.directory / "model.onnx")
            report.write(stage.directory / "parity.json")
            version = stage.commit(config, card.labels)
    return version, report


def run_instance(args: argparse.Namespace) -> int:
    """The ``visiongate export --arch torchvision:maskrcnn_*`` command (same arguments as the others)."""
    from .checkpoints import CheckpointError
    from .cli import RANDOM_BANNER, _proof_options
    from .parity import ParityError
    from .sources.architectures import read_labels_file

    arch = args.arch.rpartition(":")[2]
    if args.format != "onnx" or args.fp16 or getattr(args, "int8", False):
        print(f"--arch {args.arch} exports float32 ONNX only", file=sys.stderr)
        return 2
    if args.max_batch_size not in (None, 0):
        print(f"--arch {args.arch}: Mask R-CNN takes one image per call (max_batch_size 0); drop --max-batch-size",
              file=sys.stderr)
        return 2
    if (args.checkpoint is None) == (not args.random_weights):
        print(f"--arch {args.arch} needs --checkpoint FILE (your trained weights) or --random-weights, not both "
              "or neither", file=sys.stderr)
        return 2
    name = args.name or arch
    try:
        labels = read_labels_file(args.labels) if args.labels else None
        if args.random_weights:
            print(RANDOM_BANNER.format(name=name), file=sys.stderr)
        version, report = export_instance_segmenter(
            arch, args.checkpoint, name, args.repository, num_classes=args.num_classes, labels=labels,
            input_size=(args.input_size[0], args.input_size[1]) if args.input_size else None,
            proof=_proof_options(args))
    except (CheckpointError, ParityError, OSError, ValueError) as exc:
        print(f"{args.arch}: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: version {version} written to {args.repository / name / str(version)} (parity ONNX vs "
          f"torchvision: {', '.join(f'{k}={v:.3g}' for k, v in report.metrics.items())})")
    return 0
