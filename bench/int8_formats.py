"""Which INT8 format is fastest on this CPU, and what each costs in agreement with float32.

Quantizes one model from the repository in several formats (onnxruntime static quantization,
calibrated on the built-in calibration photographs), then, in one process and interleaved so that
other load on a shared machine hits every variant alike: ms per image at batch 1 on ONE thread
(median of rounds), and agreement with the float32 model on the held-back photographs.

    python bench/int8_formats.py [--model efficientnet_lite0] [--repository DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from visiongate.export import photo_sets
from visiongate.export.accuracy import classifier_agreement, detector_agreement, run_batched
from visiongate.export.calibration import model_inputs
from visiongate.export.int8 import Int8Options, quantize
from visiongate.service.repository import read_model

VARIANTS = {
    "qdq_u8s8_pc": Int8Options(),
    "qoperator_u8s8_pc": Int8Options(format="qoperator"),
    "qdq_u8s8_tensor": Int8Options(per_channel=False),
    "qdq_u8u8_pc": Int8Options(weights="u8"),
    "qdq_s8s8_pc": Int8Options(activations="s8"),
    "qdq_u8s8_pc_entropy": Int8Options(method="entropy"),
    "qdq_u8s8_pc_percentile": Int8Options(method="percentile"),
    "qdq_u8s8_pc_firstfloat": Int8Options(first_layer_float=True),
    "qdq_u8s8_pc_lastfloat": Int8Options(last_layer_float=True),
    "qdq_u8s8_pc_first_last_float": Int8Options(first_layer_float=True, last_layer_float=True),
}


def session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ms_per_image(sessions: dict[str, ort.InferenceSession], x: np.ndarray, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, {"image": x[:1]})
    for _ in range(rounds):
        for name, s in sessions.items():
            t = time.perf_counter()
            for row in x:
                s.run(None, {"image": row[None]})
            times[name].append((time.perf_counter() - t) * 1000 / len(x))
    return {k: round(float(np.median(v)), 2) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--only", nargs="*", help="variant names")
    ap.add_argument("--calibration", type=int, default=64, help="calibration images used")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timing-images", type=int, default=16)
    args = ap.parse_args()
    m = read_model(args.repository / args.model)
    fp32 = m.directory / str(m.spec.versions[-1]) / "model.onnx"
    cal, held = photo_sets.split(photo_sets.builtin_photos())
    cal_s = photo_sets.samples(cal)
    idx = np.linspace(0, len(cal_s) - 1, min(args.calibration, len(cal_s))).astype(int)
    xc = model_inputs(m.spec, [cal_s[i] for i in idx])
    xh = model_inputs(m.spec, photo_sets.samples(held))
    names = [n for n in VARIANTS if not args.only or n in args.only]
    outputs = [t.name for t in m.spec.outputs]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": fp32}
        for n in names:
            t = time.perf_counter()
            quantize(fp32, Path(tmp) / f"{n}.onnx", xc, VARIANTS[n])
            print(f"# quantized {n} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            paths[n] = Path(tmp) / f"{n}.onnx"
        ref = run_batched(lambda b: session(fp32, 2).run(outputs, {"image": b}), xh, 8)
        speed = ms_per_image({k: session(p, 1) for k, p in paths.items()}, xh[:args.timing_images], args.rounds)
        for n in names:
            s = session(paths[n], 2)
            got = run_batched(lambda b, s=s: s.run(outputs, {"image": b}), xh, 8)
            if m.spec.task == "classify":
                acc = classifier_agreement(ref[0], got[0], m.spec.param("output_activation", "softmax"))
            else:
                acc = detector_agreement((ref[0], ref[1]), (got[0], got[1]), m.spec)
            print(json.dumps({"variant": n, "ms_per_image_1thread": speed[n],
                              "speedup": round(speed["fp32"] / speed[n], 2),
                              **{k: round(v, 4) for k, v in acc.items()}}))
        print(json.dumps({"variant": "fp32", "ms_per_image_1thread": speed["fp32"],
                          "heldback_images": len(xh), "calibration_images": len(xc)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
