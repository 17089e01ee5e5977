"""Load senders for the Triton peer (tritonclient gRPC, asyncio) and perf_analyzer's points.

``triton-jpeg``    sends the encoded JPEG; the model decodes it inside Triton.
``triton-tensor``  the client decodes and preprocesses each JPEG with the pipeline (in a 2-thread pool,
                   timed inside the request latency) and sends the graph's input tensor.
``perf_analyzer-tensor``  Triton's own load tool on ``effnet_tensor``: random tensors, no decode at all.
Each request asks for the top 5 (the classification extension, ``class_count=5``).
"""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.peers import pipelines

Close = Callable[[], Awaitable[None]]
TRITON_TYPES = {np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8"}


def triton_sender(addr: str, kind: str, pipeline: str) -> tuple[Callable[[bytes], Awaitable[object]], Close]:
    """``kind`` is ``jpeg`` or ``tensor``; the sender returns the top-1 class id."""
    import tritonclient.grpc.aio as grpc_aio
    from tritonclient.grpc import InferInput, InferRequestedOutput

    client = grpc_aio.InferenceServerClient(addr)
    out = [InferRequestedOutput("LOGITS", class_count=5)]
    prepare = pipelines.get(pipeline)
    pool = ThreadPoolExecutor(2)

    async def send(data: bytes) -> int:
        if kind == "tensor":
            x = (await asyncio.get_running_loop().run_in_executor(pool, prepare, data))[None]
            inp = InferInput("INPUT", list(x.shape), TRITON_TYPES[x.dtype])
        else:
            x = np.frombuffer(data, np.uint8)[None]
            inp = InferInput("JPEG", list(x.shape), "UINT8")
        inp.set_data_from_numpy(x)
        r = await client.infer(f"effnet_{kind}", [inp], outputs=out, client_timeout=60)
        return int(r.as_numpy("LOGITS")[0][0].decode().split(":")[1])

    async def close() -> None:
        await client.close()
        pool.shutdown()

    return send, close


def perf_analyzer(
    binary: Path, grpc_addr: str, concurrency: int, duration_s: float, log: Path, libs: Path | None = None
) -> dict[str, object]:
    """One perf_analyzer point on ``effnet_tensor``: img/s, p50 and p99 (ms)."""
    csv_file = log.with_suffix(".csv")
    env = {**os.environ, **({"LD_LIBRARY_PATH": str(libs)} if libs else {})}
    with open(log, "wb") as f:
        subprocess.run(
            [
                str(binary),
                "-i",
                "grpc",
                "-u",
                grpc_addr,
                "-m",
                "effnet_tensor",
                "--concurrency-range",
                str(concurrency),
                "--measurement-interval",
                str(max(1000, int(duration_s * 1000 / 3))),
                "--stability-percentage",
                "50",
                "--max-trials",
                "6",
                "-f",
                str(csv_file),
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=300,
            check=True,
        )
    with open(csv_file) as f:
        r = next(csv.DictReader(f))
    return {
        "concurrency": concurrency,
        "img_s": round(float(r["Inferences/Second"]), 1),
        "p50_ms": round(int(r["p50 latency"]) / 1000, 1),
        "p99_ms": round(int(r["p99 latency"]) / 1000, 1),
        "errors": 0,
    }
