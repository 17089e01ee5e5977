"""Proof that an exported graph computes what the PyTorch model computes, on real photos.

Both sides get exactly the gateway's input: JPEG bytes decoded and resized by ``service.vision``
using the parameters of the config that is about to be written. Each task has its own measure:
- classify: max |logit difference| and top-1 agreement
- detect: the gateway's own selection (threshold + per-class NMS) on both outputs, then every
  detection matched by class and IoU, with the score difference
- segment: mask IoU per class (semantic) or per paired instance (instance masks), >= 0.99
- super_resolve: PSNR of the ONNX output against the PyTorch output on small photo crops, and the
  gain over bicubic of the ONNX model on the same crops downscaled (PSNR against the original crop)
A failed proof raises ``ParityError`` and no version is written.

Two ways a proof can pass while proving nothing are refused unless the user says otherwise: a
detector that finds nothing on the proof photos (nothing was compared: ``allow_empty_detections``),
and a super-resolution model that does worse than bicubic (it is not doing its job: ``force``).
The photos are scikit-image's, or the user's own (``--images DIR``) for a custom domain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from visiongate.service.repository import ModelSpec
from visiongate.service.vision.decode import decode
from visiongate.service.vision.detection import Detections, box_iou, select
from visiongate.service.vision.preprocess import preprocess, shrink_limit

from .photos import Photo, builtin_photos

MAX_PIXELS = 100_000_000
SR_PHOTOS = ("astronaut", "coffee", "motorcycle")


class ParityError(RuntimeError):
    pass


@dataclass(frozen=True)
class ProofOptions:
    """What the user decided about the proof (``visiongate export --images/--allow-empty-detections/--force``)."""

    #: the user's photos; ``None``: scikit-image's
    photos: tuple[Photo, ...] | None = None
    allow_empty_detections: bool = False
    #: publish a super-resolution model that is worse than bicubic on the proof photos
    force: bool = False

    def photos_for(self, task: str) -> tuple[Photo, ...]:
        if self.photos is not None:
            return self.photos
        return builtin_photos(SR_PHOTOS) if task == "super_resolve" else builtin_photos()


def _decode(photo: Photo, **kwargs: Any) -> Any:
    from visiongate.service.vision.decode import DecodeError, TooManyPixels

    try:
        return decode(photo.data, MAX_PIXELS, **kwargs)
    except (DecodeError, TooManyPixels) as exc:
        raise ParityError(f"proof photo {photo.name}: {exc}") from exc


@dataclass
class ParityReport:
    task: str
    passed: bool
    photos: list[str]
    metrics: dict[str, float]
    thresholds: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    onnxruntime: str = ort.__version__
    torch: str = torch.__version__
    seconds: float = 0.0

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def model_inputs(spec: ModelSpec, photos: tuple[Photo, ...]) -> np.ndarray:
    """The photos as the gateway would feed them: uint8 ``[N, H, W, 3]``."""
    batch = []
    for item in photos:
        decoded = _decode(item, shrink_limit=partial(shrink_limit, spec.preprocess))
        tensor, _ = preprocess(decoded.rgb, spec.preprocess, decoded.original_size)
        batch.append(tensor)
    return np.stack(batch)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, names: list[str] | None, x: np.ndarray, batch: int) -> list[np.ndarray]:
    """Run in chunks of at most ``batch`` items (a fixed-batch graph takes no more)."""
    chunks = [session.run(names, {"image": x[i:i + batch]}) for i in range(0, len(x), max(1, batch))]
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def _reference(reference: torch.nn.Module, x: np.ndarray, batch: int) -> list[np.ndarray]:
    outs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for i in range(0, len(x), max(1, batch)):
            out = reference(torch.from_numpy(x[i:i + batch]))
            outs.append([t.numpy() for t in (out if isinstance(out, tuple | list) else (out,))])
    return [np.concatenate(parts) for parts in zip(*outs, strict=True)]


def check_classifier(reference: torch.nn.Module, onnx_path: Path, spec: ModelSpec,
                     options: ProofOptions | None = None, tolerance: float = 1e-3) -> ParityReport:
    items = (options or ProofOptions()).photos_for("classify")
    photos = tuple(p.name for p in items)
    x = model_inputs(spec, items)
    batch = spec.max_batch_size or len(x)
    expected = _reference(reference, x, batch)[0]
    got = _run(_session(onnx_path), None, x, batch)[0]
    diff = float(np.abs(expected - got).max())
    scale = float(np.abs(expected).max())
    agree = float(np.mean(expected.argmax(1) == got.argmax(1)))
    labels = spec.labels or ()
    top1 = {p: labels[int(i)] if labels else int(i) for p, i in zip(photos, got.argmax(1), strict=True)}
    passed = diff <= tolerance * max(1.0, scale) and agree == 1.0
    return ParityReport(
        task="classify", passed=passed, photos=list(photos),
        metrics={"max_abs_logit_diff": diff, "max_abs_logit": scale, "top1_agreement": agree},
        thresholds={"max_abs_logit_diff": tolerance * max(1.0, scale), "top1_agreement": 1.0},
        details={"onnx_top1": top1},
    )


def _select(boxes: np.ndarray, scores: np.ndarray, spec: ModelSpec) -> Detections:
    return select(boxes, scores, score_threshold=spec.float_param("score_threshold", 0.25),
                  iou_threshold=spec.float_param("iou_threshold", 0.45),
                  max_detections=spec.int_param("max_detections", 100))


def match_detections(expected: Detections, got: Detections, score_threshold: float,
                     margin: float) -> tuple[list[float], list[float], int]:
    """Pair each expected detection with the same-class ``got`` detection of highest IoU.

    Returns (IoUs of the pairs, |score differences|, detections left unpaired on either side).
    A detection whose score lies within ``margin`` of the threshold may exist on one side only:
    float rounding decides which side of the line it falls, so it is not counted as unpaired.
    """
    ious: list[float] = []
    diffs: list[float] = []
    unpaired = 0
    taken = np.zeros(len(got), dtype=bool)
    overlap = box_iou(expected.boxes, got.boxes) if len(expected) and len(got) else np.zeros((len(expected), 0))
    for i in range(len(expected)):
        candidates = np.flatnonzero((got.class_ids == expected.class_ids[i]) & ~taken)
        if candidates.size:
            j = candidates[np.argmax(overlap[i, candidates])]
            if overlap[i, j] > 0.5:
                taken[j] = True
                ious.append(float(overlap[i, j]))
                diffs.append(abs(float(expected.scores[i]) - float(got.scores[j])))
                continue
        unpaired += int(abs(float(expected.scores[i]) - score_threshold) > margin)
    unpaired += int(np.sum(np.abs(got.scores[~taken] - score_threshold) > margin))
    return ious, diffs, unpaired


def check_detector(reference: torch.nn.Module, onnx_path: Path, spec: ModelSpec,
                   options: ProofOptions | None = None, min_iou: float = 0.99,
                   score_tolerance: float = 1e-3) -> ParityReport:
    options = options or ProofOptions()
    items = options.photos_for("detect")
    photos = tuple(p.name for p in items)
    x = model_inputs(spec, items)
    batch = spec.max_batch_size or len(x)
    ref_boxes, ref_scores = _reference(reference, x, batch)
    got_boxes, got_scores = _run(_session(onnx_path), ["boxes", "scores"], x, batch)
    threshold = spec.float_param("score_threshold", 0.25)
    labels = spec.labels or ()
    ious: list[float] = []
    diffs: list[float] = []
    unpaired, count = 0, 0
    found: dict[str, list[str]] = {}
    for k, photo in enumerate(photos):
        expected = _select(ref_boxes[k], ref_scores[k], spec)
        got = _select(got_boxes[k], got_scores[k], spec)
        i, d, u = match_detections(expected, got, threshold, score_tolerance)
        ious += i
        diffs += d
        unpaired += u
        count += len(expected)
        found[photo] = [f"{labels[c] if c < len(labels) else c} {s:.2f}"
                        for c, s in zip(got.class_ids.tolist(), got.scores.tolist(), strict=True)]
    metrics = {
        "detections": float(count),
        "unpaired": float(unpaired),
        "min_iou": min(ious, default=1.0),
        "max_score_diff": max(diffs, default=0.0),
        "max_abs_box_diff": float(np.abs(ref_boxes - got_boxes).max()),
        "max_abs_raw_score_diff": float(np.abs(ref_scores - got_scores).max()),
    }
    matched = len(ious)
    metrics["matched"] = float(matched)
    passed = unpaired == 0 and metrics["min_iou"] >= min_iou and metrics["max_score_diff"] <= score_tolerance
    thresholds = {"unpaired": 0.0, "min_iou": min_iou, "max_score_diff": score_tolerance}
    details: dict[str, Any] = {"onnx_detections": found}
    if matched == 0:
        # Nothing above the score threshold on any photo: boxes and classes were never compared.
        details["empty"] = (f"no detection above score_threshold={threshold} on {len(photos)} photos: "
                            "the proof compared nothing")
        if options.allow_empty_detections:
            details["empty"] += " (allowed by --allow-empty-detections)"
        else:
            passed = False
            thresholds["matched"] = 1.0
    return ParityReport(task="detect", passed=passed, photos=list(photos), metrics=metrics,
                        thresholds=thresholds, details=details)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two same-shape arrays on a 0..``peak`` scale (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(peak * peak / mse))


def crop_photo(item: Photo, size: int) -> np.ndarray:
    """A ``size`` square from the middle of a photo (decoded as the gateway would).

    Raises:
        ParityError: the photo is smaller than ``size`` on a side.
    """
    rgb = _decode(item).rgb
    h, w = rgb.shape[:2]
    if min(h, w) < size:
        raise ParityError(f"proof photo {item.name} is {w}x{h}: super-resolution proofs need at least {size}x{size}")
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(rgb[top:top + size, left:left + size])


def check_super_resolution(reference: torch.nn.Module, onnx_path: Path, spec: ModelSpec,
                           options: ProofOptions | None = None, crop: int = 64,
                           min_psnr_db: float = 60.0) -> ParityReport:
    scale = spec.int_param("scale", 2)
    crop -= crop % scale  # the bicubic round trip below needs a size the scale divides
    options = options or ProofOptions()
    items = options.photos_for("super_resolve")
    photos = tuple(p.name for p in items)
    x = np.stack([crop_photo(p, crop) for p in items])
    batch = spec.max_batch_size or len(x)
    expected = _reference(reference, x, batch)[0]
    session = _session(onnx_path)
    got = _run(session, None, x, batch)[0]
    if got.shape != expected.shape or got.shape[1:3] != (crop * scale, crop * scale):
        raise ParityError(f"super-resolution output shape {got.shape}, PyTorch {expected.shape}, "
                          f"expected [N, {crop * scale}, {crop * scale}, 3]")
    per_photo = [psnr(e, g) for e, g in zip(expected, got, strict=True)]
    # A port with wrong weights can match its own ONNX perfectly: the gain over bicubic on downscaled
    # crops (PSNR against the original crop) says whether the model does its job at all.
    gains = gain_over_bicubic(session, x, scale, batch)
    mean_gain = float(np.mean(gains))
    worst = min(per_photo)
    passed = worst >= min_psnr_db
    thresholds = {"min_psnr_db": min_psnr_db}
    details: dict[str, Any] = {"crop": crop, "scale": scale,
                               "gain_over_bicubic_db": {p: round(g, 3) for p, g in zip(photos, gains, strict=True)}}
    if mean_gain < 0:
        details["worse_than_bicubic"] = (f"on average {-mean_gain:.2f} dB worse than bicubic upscaling on "
                                         f"{len(photos)} photos" + (" (published with --force)" if options.force
                                                                    else ""))
        if not options.force:
            passed = False
            thresholds["mean_gain_over_bicubic_db"] = 0.0
    return ParityReport(
        task="super_resolve", passed=passed, photos=list(photos),
        metrics={"min_psnr_db": worst if np.isfinite(worst) else 999.0,
                 "max_abs_diff": float(np.abs(expected - got).max()), "mean_gain_over_bicubic_db": mean_gain},
        thresholds=thresholds, details=details,
    )


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / union


def _semantic_ious(expected: np.ndarray, got: np.ndarray) -> list[float]:
    """Per class present on either side: IoU of the arg-max class maps (``[C, h, w]`` scores)."""
    want, have = expected.argmax(0), got.argmax(0)
    return [mask_iou(want == c, have == c) for c in np.union1d(np.unique(want), np.unique(have)).tolist()]


def _instance_ious(ref: list[np.ndarray], got: list[np.ndarray], spec: ModelSpec,
                   score_tolerance: float) -> tuple[list[float], int, int]:
    """Detections selected on both sides, paired by class and box IoU; the mask IoU of each pair at
    prototype resolution. Returns (mask IoUs, unpaired, detections)."""
    ious: list[float] = []
    unpaired = count = 0
    threshold = spec.float_param("score_threshold", 0.25)
    for k in range(ref[0].shape[0]):
        e, g = (_select(side[0][k], side[1][k], spec) for side in (ref, got))
        e_boxes, e_coef, e_proto, g_coef, g_proto = ref[0][k], ref[2][k], ref[3][k], got[2][k], got[3][k]
        _, _, u = match_detections(e, g, threshold, score_tolerance)
        unpaired += u
        count += len(e)
        # the same anchors on both sides: compare the masks of the expected detections' anchors
        anchors = [int(np.flatnonzero((e_boxes == box).all(1))[0]) for box in e.boxes]
        for a in anchors:
            want = (e_coef[a] @ e_proto.reshape(e_proto.shape[0], -1)) > 0
            have = (g_coef[a] @ g_proto.reshape(g_proto.shape[0], -1)) > 0
            ious.append(mask_iou(want, have))
    return ious, unpaired, count


def check_segmenter(reference: torch.nn.Module, onnx_path: Path, spec: ModelSpec,
                    options: ProofOptions | None = None, min_iou: float = 0.99,
                    score_tolerance: float = 1e-3) -> ParityReport:
    """Mask IoU between PyTorch and ONNX Runtime on real photos, at the model's own resolution."""
    items = (options or ProofOptions()).photos_for("segment")
    photos = tuple(p.name for p in items)
    x = model_inputs(spec, items)
    names = [o.name for o in spec.outputs]
    with torch.no_grad():
        out = reference(torch.from_numpy(x))
    ref = [t.numpy() for t in (out if isinstance(out, tuple | list) else (out,))]
    got = _session(onnx_path).run(names, {"image": x})
    max_diff = max(float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True))
    if spec.param("segment_kind", "semantic") == "instance":
        ious, unpaired, count = _instance_ious(ref, got, spec, score_tolerance)
        metrics = {"instances": float(count), "unpaired": float(unpaired),
                   "min_mask_iou": min(ious, default=1.0), "max_abs_diff": max_diff}
        passed = unpaired == 0 and metrics["min_mask_iou"] >= min_iou
        thresholds = {"unpaired": 0.0, "min_mask_iou": min_iou}
        details: dict[str, Any] = {}
    else:
        per_photo = {p: _semantic_ious(r, g) for p, r, g in zip(photos, ref[0], got[0], strict=True)}
        labels = spec.labels or ()
        found = {p: {labels[c] if c < len(labels) else str(c): round(float(np.mean(g.argmax(0) == c)), 4)
                     for c in np.unique(g.argmax(0)).tolist()} for p, g in zip(photos, got[0], strict=True)}
        metrics = {"min_mask_iou": min(min(v) for v in per_photo.values()),
                   "pixel_agreement": float(np.mean(ref[0].argmax(1) == got[0].argmax(1))),
                   "max_abs_diff": max_diff}
        passed = metrics["min_mask_iou"] >= min_iou
        thresholds = {"min_mask_iou": min_iou}
        details = {"onnx_class_fractions": found}
    return ParityReport(task="segment", passed=passed, photos=list(photos), metrics=metrics,
                        thresholds=thresholds, details=details)

def gain_over_bicubic(session: ort.InferenceSession, crops: np.ndarray, scale: int, batch: int) -> list[float]:
    """Per crop: PSNR(model(downscaled), crop) - PSNR(bicubic(downscaled), crop), in dB."""
    from PIL import Image

    size = crops.shape[1]
    small = np.stack([np.asarray(Image.fromarray(c).resize((size // scale, size // scale), Image.Resampling.BICUBIC))
                      for c in crops])
    restored = np.clip(np.rint(_run(session, None, small, batch)[0]), 0, 255)
    bicubic = [np.asarray(Image.fromarray(s).resize((size, size), Image.Resampling.BICUBIC)) for s in small]
    return [psnr(c, r) - psnr(c, b) for c, r, b in zip(crops, restored, bicubic, strict=True)]


Check = Callable[[torch.nn.Module, Path, ModelSpec, ProofOptions], ParityReport]
CHECKS: dict[str, Check] = {
    "classify": check_classifier,
    "detect": check_detector,
    "super_resolve": check_super_resolution,
    "segment": check_segmenter,
}


def prove(task: str, reference: torch.nn.Module, onnx_path: Path, spec: ModelSpec,
          options: ProofOptions | None = None) -> ParityReport:
    if task not in CHECKS:
        raise ParityError(f"no parity check for task {task!r}")
    started = time.perf_counter()
    report = CHECKS[task](reference, onnx_path, spec, options or ProofOptions())
    report.seconds = round(time.perf_counter() - started, 3)
    return report
