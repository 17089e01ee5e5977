"""Segment throughput: the gateway over real HTTP vs the same work in-process, side by side.

Two pipelines, each measured both ways, interleaved over ``-r`` rounds (medians printed):
- ``alone``: the selfie model without its person gate (a copy of ``selfie_segmentation`` with the
  ``presence_*`` parameters removed, served as ``selfie_alone``);
- ``gated``: ``selfie_segmentation`` as shipped, gated by ``nanodet_m``'s person boxes.

Gateway: ``visiongate serve`` on a free loopback port over a temporary repository holding both
(copied from ``--repository``); ``-c`` client threads POST the benchmark photos (~640x480 JPEG) to
``/v1/segment`` and read the JSON (class map PNG in base64).
In-process: the same work without HTTP, ``-c`` threads on single-threaded sessions: decode +
letterbox + onnxruntime + the class map at the original size + PNG + base64; ``gated`` also runs
NanoDet on the same decoded photo, decodes its boxes and gates the map (the gateway decodes the
photo once per model).

usage: python bench/bench_segment.py --repository model_repository [-c 2] [-d 8] [-r 3]
"""

from __future__ import annotations

import argparse
import base64
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

import httpx
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import load_images, start_server
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
        return base64.b64encode(masks.png_bytes(ids))

    return work


def bench_repository(source: Path, into: Path) -> Path:
    """``selfie_segmentation`` (gated), ``selfie_alone`` (the same model without its gate), ``nanodet_m``."""
    for name in (MODEL, GATE):
        shutil.copytree(source / name, into / name)
    shutil.copytree(source / MODEL, into / ALONE)
    config = (into / ALONE / "config.pbtxt").read_text().replace(f'name: "{MODEL}"', f'name: "{ALONE}"')
    config = re.sub(r'parameters \{\s*key: "presence_[a-z_]+"\s*value \{[^}]*\}\s*\}\s*', "", config)
    (into / ALONE / "config.pbtxt").write_text(config)
    return into


def gateway(url: str, model: str) -> Callable[[bytes], object]:
    local = threading.local()

    def work(data: bytes) -> object:
        client = getattr(local, "client", None) or httpx.Client(timeout=60)
        local.client = client
        r = client.post(
            f"{url}/v1/segment", content=data, headers={"content-type": "image/jpeg"}, params={"model": model}
        )
        r.raise_for_status()
        return r.content

    return work


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("-c", "--concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("-d", "--duration", type=float, default=8.0)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    args = parser.parse_args()
    images = load_images(64)
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    figures: dict[str, list[float]] = {}
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
            cases = {
                "alone gateway": gateway(url, ALONE),
                "alone in-process": in_process(repository, gated=False),
                "gated gateway": gateway(url, MODEL),
                "gated in-process": in_process(repository, gated=True),
            }
            for work in cases.values():
                closed_loop(work, images, args.concurrency, 1.0)  # warm up
            for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits every case
                for case, work in cases.items():
                    figures.setdefault(case, []).append(closed_loop(work, images, args.concurrency, args.duration))
        finally:
            server.stop()
    med = {case: statistics.median(v) for case, v in figures.items()}
    print(f"segment, {len(images)} photos, {args.concurrency} callers, {args.rounds} rounds of {args.duration:g} s")
    for case, value in med.items():
        print(f"  {case:18s} {value:7.1f} img/s   (rounds: {', '.join(f'{v:.1f}' for v in figures[case])})")
    for pipeline in ("alone", "gated"):
        ratio = med[f"{pipeline} gateway"] / med[f"{pipeline} in-process"]
        print(f"  ratio {pipeline:6s}     {ratio:7.2f}  (gateway / in-process; target >= 0.9)")
    cost = med["gated gateway"] / med["alone gateway"]
    print(f"  cost of the gate  {cost:7.2f}  (gated / alone, through the gateway)")


if __name__ == "__main__":
    main()
