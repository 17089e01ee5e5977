"""Detect and super-resolve: the gateway over real HTTP vs the same work in-process (issue 5).

Gateway: ``visiongate serve`` on a free loopback port; concurrent clients POST real JPEGs as raw
``image/jpeg`` bodies (the 64 scikit-image photos of ``bench.common``, ~640x480, for detection;
128x128 JPEG crops of them for super-resolution, answered as PNG).
In-process: the same service code without HTTP or queues: decode + preprocess + onnxruntime +
postprocess (NMS and box mapping for detection; tiling, stitching and PNG encoding for SR), one
caller per core on a shared single-threaded session, on the same images.

Also compares where detection post-processing can run: numpy ``select`` (threshold + per-class NMS,
what the gateway does) vs ONNX's ``NonMaxSuppression`` op run by onnxruntime on the same real
YOLOv3-tiny outputs (``--nms``; needs the ``onnx`` package).

usage: python bench/bench_detect_sr.py [-c 8] [-d 5] [--only detect|sr] [--nms]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    NCPU,
    REPOSITORY,
    client_session,
    closed_loop,
    cpu_delta,
    cpu_snapshot,
    load_images,
    log,
    percentiles_ms,
    start_gateway,
    table,
)
from visiongate.service.repository import read_model
from visiongate.service.settings import Settings
from visiongate.service.vision import detection, tiles
from visiongate.service.vision.decode import decode
from visiongate.service.vision.encode import encode

DETECTOR, SR = "yolov3_tiny", "waifu2x_x2"


def sr_inputs(jpegs: Sequence[bytes], size: int = 128) -> list[bytes]:
    """Centre ``size`` crops of the benchmark photos, as JPEG (quality 90)."""
    out = []
    for data in jpegs:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = img.size
        crop = img.crop(((w - size) // 2, (h - size) // 2, (w + size) // 2, (h + size) // 2))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def model_session(name: str) -> tuple[ort.InferenceSession, object]:
    entry = read_model(REPOSITORY / name)
    path = entry.directory / str(max(entry.spec.versions)) / "model.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"]), entry.spec


def detect_worker() -> Callable[[bytes], object]:
    """decode (DCT-shrunk) + letterbox + ORT + select + map to original pixels, as the gateway does."""
    from visiongate.service.inference import prepare

    sess, spec = model_session(DETECTOR)
    settings = Settings(repository=REPOSITORY)

    def one(data: bytes) -> object:
        p = prepare(data, spec, settings)  # type: ignore[arg-type]
        boxes, scores = sess.run(["boxes", "scores"], {"image": p.tensor[None]})
        d = detection.select(boxes[0], scores[0], score_threshold=0.25, iou_threshold=0.45, max_detections=100)
        return p.placement.to_original(d.boxes)

    return one


def sr_worker() -> Callable[[bytes], object]:
    """decode + tile + ORT + stitch + round + PNG encode, as the gateway does."""
    sess, spec = model_session(SR)
    tile, overlap = spec.int_param("tile_size", 0), spec.int_param("tile_overlap", 0)  # type: ignore[attr-defined]

    def one(data: bytes) -> object:
        rgb = decode(data, 40_000_000).rgb
        plan = tiles.plan_tiles(*rgb.shape[:2], tile, overlap)
        out = sess.run(None, {"image": tiles.cut(rgb, plan)})[0]
        return encode(tiles.to_pixels(tiles.stitch(out, plan, 2)), "png")

    return one


def in_process(work: Callable[[bytes], object], payloads: Sequence[bytes], threads: int,
               duration_s: float, warmup_s: float = 1.0) -> dict[str, object]:
    lat: list[list[float]] = [[] for _ in range(threads)]
    counter = iter(range(10**12))
    measure_from = time.perf_counter() + warmup_s
    stop = measure_from + duration_s

    def loop(k: int) -> None:
        while (s := time.perf_counter()) < stop:
            work(payloads[next(counter) % len(payloads)])
            if s >= measure_from:
                lat[k].append(time.perf_counter() - s)

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    snap = cpu_snapshot(None)
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - measure_from
    cpu = cpu_delta(snap, cpu_snapshot(None))
    flat = [x for part in lat for x in part]
    p50, p99 = percentiles_ms(flat)
    return {"img_s": round(len(flat) / elapsed, 1), "p50_ms": p50, "p99_ms": p99,
            "cores": cpu["client_cores"], "foreign_pct": cpu["foreign_pct"]}


async def through_gateway(url: str, payloads: Sequence[bytes], concurrency: int, duration_s: float,
                          pid: int, expect: str) -> dict[str, object]:
    session = client_session()

    async def send(data: bytes) -> int:
        async with session.post(url, data=data, headers={"Content-Type": "image/jpeg"}) as r:  # type: ignore[attr-defined]
            raw = await r.read()
            if r.status != 200 or not r.headers["Content-Type"].startswith(expect):
                raise RuntimeError(f"HTTP {r.status}: {raw[:200]!r}")
            return len(raw)

    try:
        return (await closed_loop("gateway", send, payloads, concurrency, duration_s, server_pid=pid)).row()
    finally:
        await session.close()  # type: ignore[attr-defined]


def nms_placement(jpegs: Sequence[bytes], repeats: int = 200) -> dict[str, float]:
    """ms per image: numpy ``select`` vs the ONNX ``NonMaxSuppression`` op on real YOLOv3-tiny outputs."""
    import onnx
    from onnx import TensorProto, helper

    sess, spec = model_session(DETECTOR)
    from visiongate.service.inference import prepare

    settings = Settings(repository=REPOSITORY)
    outs = []
    for data in jpegs[:16]:
        p = prepare(data, spec, settings)  # type: ignore[arg-type]
        outs.append(sess.run(["boxes", "scores"], {"image": p.tensor[None]}))
    b, c = outs[0][1].shape[1:]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["scores"], ["scores_t"], perm=[0, 2, 1]),
         helper.make_node("NonMaxSuppression", ["boxes", "scores_t", "max_out", "iou", "thr"], ["selected"])],
        "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, b, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, b, c])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
        initializer=[helper.make_tensor("max_out", TensorProto.INT64, [1], [100]),
                     helper.make_tensor("iou", TensorProto.FLOAT, [1], [0.45]),
                     helper.make_tensor("thr", TensorProto.FLOAT, [1], [0.25])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    nms_sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(model)

    def timed(fn: Callable[[np.ndarray, np.ndarray], object]) -> float:
        t = time.perf_counter()
        for _ in range(repeats // len(outs) + 1):
            for boxes, scores in outs:
                fn(boxes, scores)
        return (time.perf_counter() - t) * 1000 / ((repeats // len(outs) + 1) * len(outs))

    np_ms = timed(lambda bx, sc: detection.select(bx[0], sc[0], score_threshold=0.25, iou_threshold=0.45,
                                                  max_detections=100))
    ort_ms = timed(lambda bx, sc: nms_sess.run(None, {"boxes": bx, "scores": sc}))
    def agree(bx: np.ndarray, sc: np.ndarray) -> bool:
        sel = nms_sess.run(None, {"boxes": bx, "scores": sc})[0]
        by_op = {(int(cl), *np.round(bx[0, i], 2).tolist()) for _, cl, i in sel}
        d = detection.select(bx[0], sc[0], score_threshold=0.25, iou_threshold=0.45, max_detections=100)
        mine = {(int(cl), *np.round(box, 2).tolist()) for cl, box in zip(d.class_ids, d.boxes, strict=True)}
        return by_op == mine

    same = all(agree(bx, sc) for bx, sc in outs)
    raw_kb = (outs[0][0].nbytes + outs[0][1].nbytes) / 1024
    return {"numpy_select_ms": round(np_ms, 3), "onnx_nms_op_ms": round(ort_ms, 3),
            "raw_output_kb_per_image": round(raw_kb, 1), "checked": float(same)}


def cpu_ms(cores: object, img_s: object) -> float | None:
    """CPU time spent per image: steadier than img/s when other people load the machine."""
    rate = float(img_s)  # type: ignore[arg-type]
    return round(float(cores) * 1000 / rate, 1) if cores is not None and rate > 0 else None  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--only", choices=["detect", "sr"])
    ap.add_argument("--nms", action="store_true", help="also time numpy NMS vs the ONNX NMS op")
    a = ap.parse_args()
    jpegs = load_images()
    cases = {"detect": ("/v1/detect", jpegs, detect_worker, "application/json"),
             "sr": ("/v1/super-resolve", sr_inputs(jpegs), sr_worker, "image/png")}
    chosen = [a.only] if a.only else list(cases)
    log(f"{len(jpegs)} JPEGs, {NCPU} cores, {a.duration:g} s per point, concurrency {a.concurrency}")
    rows = []
    server = start_gateway()
    try:
        for name in chosen:
            path, payloads, worker, expect = cases[name]
            g = asyncio.run(through_gateway(server.base_url + path, payloads, a.concurrency, a.duration,
                                            server.proc.pid, expect))
            raw = in_process(worker(), payloads, NCPU, a.duration)
            rows.append({"task": name, "gw_img_s": g["img_s"], "inproc_img_s": raw["img_s"],
                         "ratio": round(float(g["img_s"]) / float(raw["img_s"]), 2),  # type: ignore[arg-type]
                         "gw_cpu_ms": cpu_ms(g.get("server_cores"), g["img_s"]),
                         "inproc_cpu_ms": cpu_ms(raw["cores"], raw["img_s"]),
                         "gw_p50": g["p50_ms"], "gw_p99": g["p99_ms"], "inproc_p50": raw["p50_ms"],
                         "errors": g["errors"], "server_cores": g.get("server_cores"),
                         "client_cores": g.get("client_cores"),
                         "foreign_pct": max(float(g.get("foreign_pct", 0)), float(raw["foreign_pct"]))})  # type: ignore[arg-type]
            log(f"{name}: {rows[-1]}" + (f" last error: {g['last_error']}" if g.get("last_error") else ""))
    finally:
        server.stop()
    print(table(rows, [("task", "task"), ("gw_img_s", "gateway img/s"), ("inproc_img_s", "in-process img/s"),
                       ("ratio", "gateway/in-process"), ("gw_cpu_ms", "gw CPU ms/img"),
                       ("inproc_cpu_ms", "in-proc CPU ms/img"), ("gw_p50", "gw p50 ms"), ("gw_p99", "gw p99 ms"),
                       ("inproc_p50", "in-proc p50 ms"), ("errors", "errors"),
                       ("server_cores", "server cores"), ("client_cores", "client cores"),
                       ("foreign_pct", "foreign %")]))
    if a.nms:
        print(json.dumps(nms_placement(jpegs)))


if __name__ == "__main__":
    main()
