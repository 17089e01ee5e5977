"""The in-process ceiling: JPEG decode + onnxruntime in one Python process, no HTTP, no queue.

This is what a hand-written loop gets out of the same cores with the same model file, and the bar
the gateway is held to. ``--pipeline`` picks the decode and the graph (bench/peers/pipelines.py):
``visiongate`` (the default) decodes the cheapest honest way, DCT downscale then one bilinear resize
of the centre crop, into the gateway's uint8 graph: the same work the gateway does per image.
``reference`` decodes at full size and normalises in numpy into the float-input export, as the peers'
users do. Cases: one caller per core (onnxruntime intra_op 1) with batch 1 and batch 8, and one
caller with intra_op = cores; the best is the ceiling.

usage: python bench/inprocess.py [--pipeline visiongate|reference] [-d SECONDS]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    MODEL,
    NCPU,
    REPOSITORY,
    SCRATCH,
    cpu_delta,
    cpu_snapshot,
    load_images,
    percentiles_ms,
)
from bench.peers import pipelines

#: the reference pipeline's float-input export (bench/peers/export_model.py, made by bench/run_all.sh)
REFERENCE_MODEL = SCRATCH / "model" / "efficientnet_lite0_float.onnx"


def model_path(repository: Path = REPOSITORY, model: str = MODEL) -> Path:
    versions = sorted(int(p.name) for p in (repository / model).iterdir() if p.name.isdigit())
    return repository / model / str(versions[-1]) / "model.onnx"


def model_for(pipeline: str) -> Path:
    """The ONNX file a pipeline feeds."""
    return REFERENCE_MODEL if pipeline == "reference" else model_path()


def prepare(data: bytes) -> np.ndarray:
    """JPEG bytes -> ``uint8 [224, 224, 3]`` RGB, the gateway's classify input."""
    return _visiongate(data)


_visiongate = pipelines.get("visiongate")


def session(path: Path, intra_op: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_threads(sess: ort.InferenceSession, jpegs: Sequence[bytes], threads: int, duration_s: float,
                warmup_s: float = 1.0, batch: int = 1,
                prep: Callable[[bytes], np.ndarray] = prepare) -> dict[str, object]:
    """``threads`` loops of decode ``batch`` images -> one ORT run on a shared session; img/s and latency
    (per call)."""
    name = sess.get_inputs()[0].name
    lat: list[list[float]] = [[] for _ in range(threads)]
    counter = iter(range(10**12))
    t_start = time.perf_counter()
    measure_from = t_start + warmup_s
    stop = measure_from + duration_s

    def loop(k: int) -> None:
        while (s := time.perf_counter()) < stop:
            x = np.stack([prep(jpegs[next(counter) % len(jpegs)]) for _ in range(batch)])
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
    return {"img_s": round(len(all_lat) * batch / elapsed, 1), "p50_ms": p50, "p99_ms": p99,
            "ok": len(all_lat) * batch, "errors": 0, "server_cores": cpu["client_cores"],
            "foreign_pct": cpu["foreign_pct"]}


def raw_at(jpegs: Sequence[bytes], concurrency: int, duration_s: float, intra_op: int = 1,
           path: Path | None = None) -> dict[str, object]:
    """Hand-written loop with as many callers as are useful for ``concurrency`` (at most one per core)."""
    threads = max(1, min(concurrency, NCPU))
    r = run_threads(session(path or model_path(), intra_op), jpegs, threads, duration_s)
    return {"case": f"{threads}thr_intra{intra_op}", **r}


def ceiling(jpegs: Sequence[bytes], duration_s: float, path: Path | None = None,
            pipeline: str = "visiongate") -> dict[str, object]:
    """Best in-process img/s over the sensible ways to use the cores."""
    path, prep = path or model_for(pipeline), pipelines.get(pipeline)
    narrow = session(path, 1)
    cases = {f"{NCPU}thr_intra1": run_threads(narrow, jpegs, NCPU, duration_s, prep=prep),
             f"{NCPU}thr_intra1_b8": run_threads(narrow, jpegs, NCPU, duration_s, batch=8, prep=prep)}
    if NCPU > 1:
        cases[f"1thr_intra{NCPU}"] = run_threads(session(path, NCPU), jpegs, 1, duration_s, prep=prep)
    best = max(cases, key=lambda k: float(cases[k]["img_s"]))  # type: ignore[arg-type]
    return {"pipeline": pipeline, "ceiling_img_s": cases[best]["img_s"], "ceiling_case": best,
            "cases": {k: v["img_s"] for k, v in cases.items()},
            "foreign_pct_max": max(float(v["foreign_pct"]) for v in cases.values())}  # type: ignore[arg-type]


def calib(jpegs: Sequence[bytes], duration_s: float) -> dict[str, object]:
    """A CPU-speed probe: one caller, decode + ORT batch 1, intra_op = cores. The host's speed drifts, so
    the harness takes one before each server's block."""
    r = run_threads(session(model_path(), NCPU), jpegs, 1, duration_s, warmup_s=0.5)
    return {"calib_img_s": r["img_s"], "calib_foreign_pct": r["foreign_pct"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per case")
    ap.add_argument("--pipeline", choices=pipelines.PIPELINES, default="visiongate")
    a = ap.parse_args()
    print(json.dumps(ceiling(load_images(), a.duration, pipeline=a.pipeline)))


if __name__ == "__main__":
    main()
