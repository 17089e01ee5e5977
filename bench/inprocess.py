"""The in-process ceiling: JPEG decode + onnxruntime in one Python process, no HTTP, no queue.

This is what a hand-written loop gets out of the same cores with the same model file, and the bar
the gateway is held to. Decoding is done the cheapest honest way (Pillow ``draft`` DCT downscale,
then one bilinear resize of the centre crop), the same work the gateway does per image.

usage: python bench/inprocess.py [-d SECONDS]      prints one JSON line per case and the best
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import MODEL, NCPU, REPOSITORY, cpu_snapshot, cpu_delta, load_images, percentiles_ms  # noqa: E402

RESIZE, CROP = 256, 224


def model_path(repository: Path = REPOSITORY, model: str = MODEL) -> Path:
    versions = sorted(int(p.name) for p in (repository / model).iterdir() if p.name.isdigit())
    return repository / model / str(versions[-1]) / "model.onnx"


def prepare(data: bytes) -> np.ndarray:
    """JPEG bytes -> ``uint8 [224, 224, 3]`` RGB: shorter side to 256, centre 224 (ImageNet style)."""
    img = Image.open(io.BytesIO(data))
    w, h = img.size
    s = RESIZE / min(w, h)
    img.draft("RGB", (math.ceil(w * s), math.ceil(h * s)))
    img = img.convert("RGB")
    w, h = img.size
    s = RESIZE / min(w, h)
    cw, ch = CROP / s, CROP / s
    left, top = (w - cw) / 2, (h - ch) / 2
    return np.asarray(img.resize((CROP, CROP), Image.Resampling.BILINEAR,
                                 box=(left, top, left + cw, top + ch), reducing_gap=None))


def session(path: Path, intra_op: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_threads(sess: ort.InferenceSession, jpegs: Sequence[bytes], threads: int,
                duration_s: float, warmup_s: float = 1.0) -> dict[str, object]:
    """``threads`` loops of decode -> one-image ORT run on a shared session; img/s and latency."""
    name = sess.get_inputs()[0].name
    lat: list[list[float]] = [[] for _ in range(threads)]
    counter = iter(range(10**12))
    t_start = time.perf_counter()
    measure_from = t_start + warmup_s
    stop = measure_from + duration_s

    def loop(k: int) -> None:
        while (s := time.perf_counter()) < stop:
            x = prepare(jpegs[next(counter) % len(jpegs)])[None]
            sess.run(None, {name: x})
            if s >= measure_from:
                lat[k].append(time.perf_counter() - s)

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    snap = cpu_snapshot(None)  # this process counts as the "client" here
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - measure_from
    cpu = cpu_delta(snap, cpu_snapshot(None))
    all_lat = [x for part in lat for x in part]
    p50, p99 = percentiles_ms(all_lat)
    return {"img_s": round(len(all_lat) / elapsed, 1), "p50_ms": p50, "p99_ms": p99, "ok": len(all_lat),
            "errors": 0, "server_cores": cpu["client_cores"], "foreign_pct": cpu["foreign_pct"]}


def raw_at(jpegs: Sequence[bytes], concurrency: int, duration_s: float, intra_op: int = 1,
           path: Path | None = None) -> dict[str, object]:
    """Hand-written loop with as many callers as are useful for ``concurrency`` (at most one per core)."""
    threads = max(1, min(concurrency, NCPU))
    r = run_threads(session(path or model_path(), intra_op), jpegs, threads, duration_s)
    return {"case": f"{threads}thr_intra{intra_op}", **r}


def ceiling(jpegs: Sequence[bytes], duration_s: float, path: Path | None = None) -> dict[str, object]:
    """Best in-process img/s over the sensible ways to use the cores (one caller per core, intra 1;
    one caller, intra = cores)."""
    path = path or model_path()
    cases = {f"{NCPU}thr_intra1": run_threads(session(path, 1), jpegs, NCPU, duration_s)}
    if NCPU > 1:
        cases[f"1thr_intra{NCPU}"] = run_threads(session(path, NCPU), jpegs, 1, duration_s)
    best = max(cases, key=lambda k: float(cases[k]["img_s"]))  # type: ignore[arg-type]
    return {"ceiling_img_s": cases[best]["img_s"], "ceiling_case": best,
            "cases": {k: v["img_s"] for k, v in cases.items()},
            "foreign_pct_max": max(float(v["foreign_pct"]) for v in cases.values())}  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per case")
    a = ap.parse_args()
    print(json.dumps(ceiling(load_images(), a.duration)))


if __name__ == "__main__":
    main()
