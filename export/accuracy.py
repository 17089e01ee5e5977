"""How closely one model follows another on the same inputs: an accuracy proof, not a tensor diff.

Classifiers (over the config's output activation, softmax by default):
- ``top1_agreement``: share of images whose top class is the same;
- ``top1_agreement_decided``: the same over images whose reference top class is decided (its
  probability exceeds the runner-up's by ``decided_margin``): on a near-tie any rounding may swap
  the two, which says nothing about the model (``decided_images`` counts them);
- ``top5_agreement``: mean share of the reference's five top classes found among the candidate's five;
- ``reference_top1_in_top5``: share of images whose reference top class is among the candidate's five;
- ``mean_kl``: mean KL(reference || candidate) of the probabilities, in nats.
Detectors (after the gateway's own selection: score threshold, per-class NMS, max detections):
- ``box_recall``: share of the reference's detections matched by a same-class candidate detection
  at IoU >= 0.5 (greedy, highest reference score first);
- ``box_precision``: share of the candidate's detections that matched one;
- ``mean_score_drift`` / ``max_score_drift``: |score difference| over matched pairs;
- ``mean_iou``: IoU over matched pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from visiongate.service.repository import ModelSpec
from visiongate.service.vision.detection import box_iou, select

Runner = Callable[[np.ndarray], list[np.ndarray]]


def run_batched(run: Runner, inputs: np.ndarray, batch: int) -> list[np.ndarray]:
    """``run`` over ``inputs`` in chunks of ``batch`` rows; outputs concatenated per output."""
    chunks = [run(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def _probabilities(logits: np.ndarray, activation: str) -> np.ndarray:
    x = logits.astype(np.float64)
    if activation == "sigmoid":
        sig: np.ndarray = 1.0 / (1.0 + np.exp(-x))
        return sig
    if activation == "none":
        return x
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    soft: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return soft


def classifier_agreement(reference: np.ndarray, candidate: np.ndarray, activation: str = "softmax",
                         decided_margin: float = 0.1) -> dict[str, float]:
    """``reference``/``candidate``: logits ``[N, classes]`` of the same N inputs."""
    p, q = _probabilities(reference, activation), _probabilities(candidate, activation)
    k = min(5, p.shape[1])
    top_p = np.argsort(-p, axis=1)[:, :k]
    top_q = np.argsort(-q, axis=1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_p.tolist(), top_q.tolist(), strict=True)]
    eps = 1e-12
    same = top_p[:, 0] == top_q[:, 0]
    ranked = np.sort(p, axis=1)
    decided = (ranked[:, -1] - ranked[:, -2]) >= decided_margin if p.shape[1] > 1 else np.ones(len(p), bool)
    metrics = {
        "images": float(len(p)),
        "top1_agreement": float(np.mean(same)),
        "decided_images": float(decided.sum()),
        "top1_agreement_decided": float(np.mean(same[decided])) if decided.any() else 1.0,
        "top5_agreement": float(np.mean(overlap)),
        "reference_top1_in_top5": float(np.mean([a in b for a, b in zip(top_p[:, 0], top_q.tolist(), strict=True)])),
    }
    if activation == "softmax":
        kl = np.sum(p * (np.log(p + eps) - np.log(q + eps)), axis=1)
        metrics["mean_kl"] = float(np.mean(kl))
        metrics["max_kl"] = float(np.max(kl))
    return metrics


def detector_agreement(reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray],
                       spec: ModelSpec, min_iou: float = 0.5) -> dict[str, float]:
    """``reference``/``candidate``: raw (boxes ``[N, A, 4]``, scores ``[N, A, C]``) of the same N inputs."""
    threshold, iou = spec.float_param("score_threshold", 0.25), spec.float_param("iou_threshold", 0.45)
    limit = spec.int_param("max_detections", 100)
    found = matched = kept = 0
    drifts: list[float] = []
    ious: list[float] = []
    for i in range(len(reference[0])):
        ref = select(reference[0][i], reference[1][i], score_threshold=threshold, iou_threshold=iou,
                     max_detections=limit)
        got = select(candidate[0][i], candidate[1][i], score_threshold=threshold, iou_threshold=iou,
                     max_detections=limit)
        found += len(ref)
        kept += len(got)
        if not len(ref) or not len(got):
            continue
        overlap = box_iou(ref.boxes, got.boxes)
        taken = np.zeros(len(got), dtype=bool)
        for r in np.argsort(-ref.scores):
            options = np.flatnonzero((got.class_ids == ref.class_ids[r]) & ~taken)
            if not options.size:
                continue
            j = options[np.argmax(overlap[r, options])]
            if overlap[r, j] >= min_iou:
                taken[j] = True
                matched += 1
                drifts.append(abs(float(ref.scores[r]) - float(got.scores[j])))
                ious.append(float(overlap[r, j]))
    return {
        "images": float(len(reference[0])),
        "reference_detections": float(found),
        "candidate_detections": float(kept),
        "box_recall": matched / found if found else 1.0,
        "box_precision": matched / kept if kept else 1.0,
        "mean_score_drift": float(np.mean(drifts)) if drifts else 0.0,
        "max_score_drift": float(np.max(drifts)) if drifts else 0.0,
        "mean_iou": float(np.mean(ious)) if ious else 1.0,
    }
