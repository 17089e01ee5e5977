"""Segment throughput: the gateway over real HTTP vs the same work in-process, side by side.

Two pipelines, each measured both ways, interleaved over ``-r`` rounds (medians printed):
- ``alone``: the selfie model without its person gate (a copy of ``selfie_segmentation`` with
  ``presence_model: ""``, served as ``selfie_alone``);
- ``gated``: ``selfie_segmentation`` as shipped, gated by ``nanodet_m``'s person boxes.

Gateway: ``visiongate serve`` on a free loopback port over a temporary repository holding both
(copied from ``--repository``); ``-c`` aiohttp callers (the classify bench's client, in this process,
sharing the cores) POST the benchmark photos (~640x480 JPEG) to ``/v1/segment`` and read the JSON
(class map PNG in base64). Its CPU per image is the server process's alone.
In-process: the same work without HTTP, one thread per core on single-threaded sessions: decode +
letterbox + onnxruntime + the class map at the original size + its class fractions + PNG + base64
(what the answer carries); ``gated`` also runs
NanoDet on the same decoded photo, decodes its boxes and gates the map (the gateway decodes the
photo once per model).

usage: python bench/bench_segment.py --repository model_repository [-c 2 16] [-d 8] [-r 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import client_session, cpu_delta, cpu_snapshot, load_images, start_server
from bench.common import closed_loop as async_closed_loop
from visiongate.service.repository import ModelSpec, read_model
from visiongate.service.vision import heads, masks
from visiongate.service.vision.decode import decode
from visiongate.service.vision.preprocess import preprocess, shrink_limit

MODEL = "selfie_segmentation"
ALONE = "selfie_alone"
GATE = "nanodet_m"


def closed_loop(
    work: Callable[[bytes], object], images: Sequence[bytes], threads: int, seconds: float
) -> float:
    """Images per second with ``threads`` callers looping over ``images`` for ``seconds``."""
    done = [0] * threads
    stop = time.monotonic() + seconds

    def loop(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            work(images[i % len(images)])
            done[k] += 1
            i += threads

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) / (time.monotonic() - started)


def _session(repository: Path, name: str) -> tuple[ModelSpec, ort.InferenceSession]:
    entry = read_model(repository / name)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    path = entry.directory / str(max(entry.spec.versions)) / "model.onnx"
    return entry.spec, ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def in_process(repository: Path, gated: bool) -> Callable[[bytes], object]:
    spec, session = _session(repository, MODEL)
    gate_spec, gate_session = _session(repository, GATE)
    input_hw = spec.preprocess.input_size
    gate_hw = gate_spec.preprocess.input_size
    assert input_hw is not None and gate_hw is not None
    person = (gate_spec.labels or ()).index("person")
    options = heads.HeadOptions(score_threshold=0.5, iou_threshold=gate_spec.float_param("iou_threshold", 0.45),
                                classes=np.array([person]))

    def work(data: bytes) -> object:
        decoded = decode(
            data, 40_000_000, shrink_limit=partial(shrink_limit, spec.preprocess)
        )  # as the gateway
        x, placement = preprocess(decoded.rgb, spec.preprocess, decoded.original_size)
        scores = session.run(["scores"], {"image": x[None]})[0][0]
        ids = masks.class_map(scores, placement, input_hw)
        if gated:
            g, gplace = preprocess(decoded.rgb, gate_spec.preprocess, decoded.original_size)
            out = dict(zip(("boxes", "scores"), gate_session.run(["boxes", "scores"], {"image": g[None]}), strict=True))
            (found,) = heads.decode(gate_spec.param("head", "visiongate"), out, options,
                                    input_size=(gate_hw[1], gate_hw[0]), images=1)
            keep = masks.inside_boxes(placement.original_size, gplace.to_original(found.boxes), 0.1)
            masks.gate_class(ids, 1, keep, 0)
        return masks.class_fractions(ids, 2), base64.b64encode(masks.png_bytes(ids))

    return work


def bench_repository(source: Path, into: Path) -> Path:
    """``selfie_segmentation`` (gated), ``selfie_alone`` (the same model without its gate), ``nanodet_m``."""
    for name in (MODEL, GATE):
        shutil.copytree(source / name, into / name)
    shutil.copytree(source / MODEL, into / ALONE)
    config = (into / ALONE / "config.pbtxt").read_text().replace(f'name: "{MODEL}"', f'name: "{ALONE}"')
    # an empty presence_model turns the gate off (left out, the ONNX metadata's value would apply)
    config = re.sub(r'(key: "presence_model"\s*value \{\s*string_value: )"[^"]*"', r'\1""', config)
    (into / ALONE / "config.pbtxt").write_text(config)
    return into


def gateway(
    url: str, model: str, images: list[bytes], concurrency: int, seconds: float, pid: int
) -> tuple[float, float]:
    """(img/s, server CPU ms per image) with ``concurrency`` aiohttp callers (the classify bench's client)."""

    async def measure() -> tuple[float, float]:
        import aiohttp

        session = client_session()
        assert isinstance(session, aiohttp.ClientSession)

        async def send(data: bytes) -> None:
            async with session.post(f"{url}/v1/segment", params={"model": model}, data=data,
                                    headers={"Content-Type": "image/jpeg"}) as r:
                raw = await r.read()
                if r.status != 200 or "class_map" not in json.loads(raw):
                    raise RuntimeError(f"HTTP {r.status}: {raw[:200]!r}")

        try:
            point = await async_closed_loop(model, send, images, concurrency, seconds, warmup_s=0.5, server_pid=pid)
        finally:
            await session.close()
        if point.errors:
            raise SystemExit(f"{point.errors} failed requests: {point.extra.get('last_error')}")
        cores = float(point.extra["server_cores"])  # type: ignore[arg-type]
        return point.img_s, cores * 1000 / point.img_s

    return asyncio.run(measure())


def local(
    work: Callable[[bytes], object], images: list[bytes], concurrency: int, seconds: float
) -> tuple[float, float]:
    """(img/s, this process's CPU ms per image) with at most one thread per core (more only queue)."""
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    before = cpu_snapshot(None)
    rate = closed_loop(work, images, threads, seconds)
    cores = cpu_delta(before, cpu_snapshot(None))["client_cores"]
    return rate, cores * 1000 / rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[2, 16])
    parser.add_argument("-d", "--duration", type=float, default=8.0)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    args = parser.parse_args()
    images = load_images(64)
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    figures: dict[tuple[int, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="visiongate-bench-segment-") as scratch:
        repository = bench_repository(args.repository, Path(scratch))
        server = start_server(
            "visiongate",
            [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export", "--host", "127.0.0.1",
             "--port", str(port), "--repository", str(repository)],
            url,
            "/readyz",
            env={"VISIONGATE_LOG_LEVEL": "warning"},
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            pid = server.proc.pid
            works = {False: in_process(repository, gated=False), True: in_process(repository, gated=True)}
            for gated, model in ((False, ALONE), (True, MODEL)):  # warm up
                gateway(url, model, images, 2, 1.0, pid)
                local(works[gated], images, 2, 1.0)
            for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits every case
                for c in args.concurrency:
                    for gated, model in ((False, ALONE), (True, MODEL)):
                        name = "gated" if gated else "alone"
                        figures.setdefault((c, f"{name} gateway"), []).append(
                            gateway(url, model, images, c, args.duration, pid))
                        figures.setdefault((c, f"{name} in-process"), []).append(
                            local(works[gated], images, c, args.duration))
        finally:
            server.stop()
    print(f"segment, {len(images)} photos (~640x480 JPEG), {args.rounds} rounds of {args.duration:g} s; "
          f"alone = {ALONE}, gated = {MODEL} with its {GATE} person gate")
    print("  conc  case                 img/s  CPU ms/img   (img/s per round)")
    med: dict[tuple[int, str], tuple[float, float]] = {}
    for (c, case), values in figures.items():
        med[(c, case)] = (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
        rounds = ", ".join(f"{v[0]:.1f}" for v in values)
        print(f"  {c:4d}  {case:18s} {med[(c, case)][0]:7.1f}  {med[(c, case)][1]:9.2f}   ({rounds})")
    for c in args.concurrency:
        for name in ("alone", "gated"):
            (g_rate, g_ms), (l_rate, l_ms) = med[(c, f"{name} gateway")], med[(c, f"{name} in-process")]
            print(f"  c={c:<3d} {name}: gateway / in-process {g_rate / l_rate:5.2f} in img/s, "
                  f"{l_ms / g_ms:5.2f} in CPU per image (target >= 0.9)")
        cost = med[(c, "gated gateway")][0] / med[(c, "alone gateway")][0]
        print(f"  c={c:<3d} the gate through the gateway: {cost:5.2f}x the img/s of the model alone")


if __name__ == "__main__":
    main()
