"""INT8 against float32, side by side in one run, through a real ``visiongate serve`` (issue 19).

One gateway serves the repository with both models of each pair (``<name>`` and ``<name>_int8``,
made by ``visiongate export <name> --int8``). Points alternate float32 / INT8 twice so that other
load on a shared machine hits both alike; the best of the two runs of each is reported.
- classify (EfficientNet-Lite0): img/s at concurrency 32 (INT8/fp32 ratio; target >= 1.4) and p50 at
  concurrency 1 (target <= 8 ms);
- detect (YOLOv3-tiny): img/s at concurrency 32 and the ratio;
- the in-process ceiling for each Lite0 model (decode + onnxruntime, no HTTP) and the gateway's
  ratio to it (target >= 0.9);
- ``--profile``: onnxruntime's profiler, milliseconds per op type for one image on one thread.

    python bench/bench_int8.py [--repository model_repository] [-d 5] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (
    NCPU,
    client_session,
    closed_loop,
    free_port,
    http_sender,
    load_images,
    log,
    start_server,
)
from bench.inprocess import ceiling, prepare

CLASSIFY, DETECT = "efficientnet_lite0", "yolov3_tiny"


def newest(repository: Path, model: str) -> Path:
    versions = sorted(int(p.name) for p in (repository / model).iterdir() if p.name.isdigit())
    return repository / model / str(versions[-1]) / "model.onnx"


def detect_sender(session: object, url: str):  # type: ignore[no-untyped-def]
    async def send(data: bytes) -> int:
        async with session.post(url, data=data, headers={"Content-Type": "image/jpeg"}) as r:  # type: ignore[attr-defined]
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")
            return len(json.loads(body)["detections"])
    return send


async def point(base: str, task: str, model: str, jpegs: list[bytes], c: int, d: float, pid: int) -> dict:
    session = client_session()
    try:
        url = f"{base}/v1/{task}?model={model}"
        send = http_sender(session, url) if task == "classify" else detect_sender(session, url)
        return (await closed_loop(model, send, jpegs, c, d, server_pid=pid)).row()
    finally:
        await session.close()  # type: ignore[attr-defined]


def side_by_side(base: str, task: str, model: str, jpegs: list[bytes], c: int, d: float, pid: int) -> dict:
    runs: dict[str, list[dict]] = defaultdict(list)
    for _ in range(2):
        for m in (model, model + "_int8"):
            runs[m].append(asyncio.run(point(base, task, m, jpegs, c, d, pid)))
    best = {m: max(r, key=lambda row: row["img_s"]) for m, r in runs.items()}
    fp32, int8 = best[model], best[model + "_int8"]
    return {"task": task, "concurrency": c, "fp32_img_s": fp32["img_s"], "int8_img_s": int8["img_s"],
            "ratio": round(int8["img_s"] / fp32["img_s"], 2), "fp32_p50_ms": fp32["p50_ms"],
            "int8_p50_ms": int8["p50_ms"], "int8_p99_ms": int8["p99_ms"],
            "errors": fp32["errors"] + int8["errors"],
            "foreign_pct": max(float(r.get("foreign_pct", 0)) for rs in runs.values() for r in rs)}


def profile(path: Path, jpegs: list[bytes], n: int = 32) -> dict[str, float]:
    """ms per image by op type, one thread, batch 1 (onnxruntime's own profiler)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "p")
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        x = [prepare(j)[None] for j in jpegs[:n]]
        for row in x:
            s.run(None, {s.get_inputs()[0].name: row})
        events = json.loads(Path(s.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1000 / n
    return {k: round(v, 3) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per point")
    ap.add_argument("--no-detect", action="store_true")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    repo = a.repository.resolve()
    models = [CLASSIFY] + ([] if a.no_detect else [DETECT])
    missing = [m + "_int8" for m in models if not (repo / f"{m}_int8" / "config.pbtxt").is_file()]
    if missing:
        print(f"{repo} lacks {missing}: visiongate export {' '.join(models)} --int8 --missing-only "
              f"--repository {repo}", file=sys.stderr)
        return 2
    jpegs = load_images()
    if a.profile:
        for m in (CLASSIFY, CLASSIFY + "_int8"):
            print(json.dumps({"profile": m, "ms_per_image_by_op": profile(newest(repo, m), jpegs)}))
    log(f"{len(jpegs)} JPEGs, {NCPU} cores, {a.duration:g} s per point, {repo}")
    port = free_port()
    server = start_server("visiongate", [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export",
                                         "--host", "127.0.0.1", "--port", str(port), "--repository", str(repo)],
                          f"http://127.0.0.1:{port}", "/readyz", env={"VISIONGATE_LOG_LEVEL": "warning"}, cwd=ROOT)
    rows = []
    try:
        base = server.base_url
        rows.append(side_by_side(base, "classify", CLASSIFY, jpegs, 32, a.duration, server.proc.pid))
        rows.append(side_by_side(base, "classify", CLASSIFY, jpegs, 1, a.duration, server.proc.pid))
        if not a.no_detect:
            rows.append(side_by_side(base, "detect", DETECT, jpegs, 32, a.duration, server.proc.pid))
    finally:
        server.stop()
    for row in rows:
        print(json.dumps(row))
    ceilings = {m: ceiling(jpegs, a.duration, path=newest(repo, m)) for m in (CLASSIFY, CLASSIFY + "_int8")}
    c32 = rows[0]
    print(json.dumps({
        "inprocess_fp32_img_s": ceilings[CLASSIFY]["ceiling_img_s"],
        "inprocess_int8_img_s": ceilings[CLASSIFY + "_int8"]["ceiling_img_s"],
        "inprocess_ratio": round(float(ceilings[CLASSIFY + "_int8"]["ceiling_img_s"])  # type: ignore[arg-type]
                                 / float(ceilings[CLASSIFY]["ceiling_img_s"]), 2),  # type: ignore[arg-type]
        "gateway_int8_vs_inprocess_int8": round(c32["int8_img_s"]
                                                / float(ceilings[CLASSIFY + "_int8"]["ceiling_img_s"]), 2),  # type: ignore[arg-type]
        "gateway_fp32_vs_inprocess_fp32": round(c32["fp32_img_s"]
                                                / float(ceilings[CLASSIFY]["ceiling_img_s"]), 2),  # type: ignore[arg-type]
        "foreign_pct_max": max(float(c["foreign_pct_max"]) for c in ceilings.values()),  # type: ignore[arg-type]
    }))
    print(f"\nclient and gateway share {NCPU} cores; foreign % = other processes' CPU: when it is high, img/s "
          "is noisy and only the ratios measured side by side mean much", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
