"""Segment throughput: the gateway over real HTTP vs the same work in-process.

Gateway: ``visiongate serve`` on a free loopback port serving ``--repository`` (it must hold
``selfie_segmentation``); ``-c`` client threads POST the benchmark photos (~640x480 JPEG) to
``/v1/segment`` and read the JSON (class map PNG in base64).
In-process: the same work without HTTP: decode + letterbox + onnxruntime + the class map at the
original size + PNG + base64 (JPEGs decoded DCT-downscaled as the gateway does), ``-c`` threads
on one single-threaded session.

usage: python bench/bench_segment.py --repository model_repository [-c 2] [-d 8]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import httpx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import load_images, start_server
from visiongate.service.repository import read_model
from visiongate.service.vision import masks
from visiongate.service.vision.decode import decode
from visiongate.service.vision.preprocess import preprocess, shrink_limit

MODEL = "selfie_segmentation"


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


def in_process(repository: Path) -> Callable[[bytes], object]:
    entry = read_model(repository / MODEL)
    spec = entry.spec
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    path = entry.directory / str(max(spec.versions)) / "model.onnx"
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    input_hw = spec.preprocess.input_size
    assert input_hw is not None

    def work(data: bytes) -> object:
        decoded = decode(
            data, 40_000_000, shrink_limit=partial(shrink_limit, spec.preprocess)
        )  # as the gateway
        x, placement = preprocess(decoded.rgb, spec.preprocess, decoded.original_size)
        scores = session.run(["scores"], {"image": x[None]})[0][0]
        ids = masks.class_map(scores, placement, input_hw)
        return base64.b64encode(masks.png_bytes(ids))

    return work


def gateway(url: str) -> Callable[[bytes], object]:
    local = threading.local()

    def work(data: bytes) -> object:
        client = getattr(local, "client", None) or httpx.Client(timeout=60)
        local.client = client
        r = client.post(
            f"{url}/v1/segment", content=data, headers={"content-type": "image/jpeg"}, params={"model": MODEL}
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
    args = parser.parse_args()
    images = load_images(64)
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    server = start_server(
        "visiongate",
        [
            sys.executable,
            "-m",
            "visiongate.service.cli",
            "serve",
            "--no-export",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--repository",
            str(args.repository),
        ],
        url,
        "/readyz",
        env={"VISIONGATE_LOG_LEVEL": "warning"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        via_http = gateway(url)
        closed_loop(via_http, images, args.concurrency, 1.0)  # warm up
        http_ips = closed_loop(via_http, images, args.concurrency, args.duration)
    finally:
        server.stop()
    work = in_process(args.repository)
    closed_loop(work, images, args.concurrency, 1.0)
    local_ips = closed_loop(work, images, args.concurrency, args.duration)
    print(f"segment {MODEL}, {len(images)} photos, {args.concurrency} callers, {args.duration:g} s each")
    print(f"  gateway    {http_ips:7.1f} img/s")
    print(f"  in-process {local_ips:7.1f} img/s")
    print(f"  ratio      {http_ips / local_ips:7.2f}  (gateway / in-process; target >= 0.9)")


if __name__ == "__main__":
    main()
