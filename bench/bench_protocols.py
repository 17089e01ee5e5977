"""The Open Inference Protocol's transports side by side (issue 16), on the exported efficientnet_lite0.

Every point sends the same tensor, scikit-image's chelsea pre-processed to uint8 [1, 224, 224, 3], from
tritonclient's asyncio clients (one client shared by ``c`` closed-loop tasks):
  grpc         visiongate's gRPC port          tritonclient.grpc.aio
  rest-binary  visiongate's /v2, binary tensor tritonclient.http.aio (binary_data=True)
  rest-json    visiongate's /v2, JSON tensor   tritonclient.http.aio (binary_data=False)
  triton-grpc  a real tritonserver 2.51 (nvidia-pytriton, python backend running the same model.onnx
               with onnxruntime: tests/backends/triton_server.py), gRPC, no gateway
Ratios are printed against gRPC through the gateway. The client shares the machine's cores with
the servers (and, on the development VM, with other work): compare columns of one run, not runs.

usage: python bench/bench_protocols.py [-c 1 8 32] [-d 4] [--no-triton] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "backends"))
from bench.bench_triton_overhead import triton_grpc
from bench.common import MODEL, REPOSITORY, chelsea_jpeg, free_port, log, percentiles_ms, start_gateway, table


def pixels() -> np.ndarray:
    """chelsea as the model takes it, pre-processed by the gateway's own ``prepare``."""
    from visiongate.service.inference import prepare
    from visiongate.service.repository import read_model
    from visiongate.service.settings import Settings

    spec = read_model(REPOSITORY / MODEL).spec
    return prepare(chelsea_jpeg(), spec, Settings()).tensor[None]


async def closed_loop(send: Callable[[], Awaitable[None]], concurrency: int, duration_s: float
                      ) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration_s

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                await send()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    p50, p99 = percentiles_ms(latencies)
    return {"rps": len(latencies) / elapsed, "p50_ms": p50, "p99_ms": p99, "errors": errors}


async def point(kind: str, url: str, batch: np.ndarray, concurrency: int, duration_s: float) -> dict[str, Any]:
    if kind.endswith("grpc"):
        import tritonclient.grpc.aio as tga

        client: Any = tga.InferenceServerClient(url)
        inp = tga.InferInput("image", list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch)
        outputs = [tga.InferRequestedOutput("logits")]
    else:
        import tritonclient.http.aio as tha

        client = tha.InferenceServerClient(url, conn_limit=max(concurrency, 8))
        inp = tha.InferInput("image", list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch, binary_data=kind == "rest-binary")
        outputs = [tha.InferRequestedOutput("logits", binary_data=kind == "rest-binary")]

    async def send() -> None:
        result = await client.infer(MODEL, [inp], outputs=outputs)
        assert result.as_numpy("logits").shape == (1, 1000)

    try:
        await send()  # warm the connection
        return {"transport": kind, "c": concurrency, **await closed_loop(send, concurrency, duration_s)}
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("-d", "--duration", type=float, default=4.0, help="seconds per point")
    parser.add_argument("--no-triton", action="store_true", help="skip the real tritonserver comparison")
    parser.add_argument("--triton-grpc", help="a running Triton's gRPC address instead of starting one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    batch = pixels()
    grpc_port = free_port()
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        gateway = start_gateway(env={"VISIONGATE_GRPC_PORT": str(grpc_port)})
        stack.callback(gateway.stop)
        targets = {"grpc": f"127.0.0.1:{grpc_port}", "rest-binary": gateway.base_url.removeprefix("http://"),
                   "rest-json": gateway.base_url.removeprefix("http://")}
        if not args.no_triton:
            url, _ = stack.enter_context(triton_grpc(args.triton_grpc))
            targets["triton-grpc"] = url
        for c in args.concurrency:
            for kind, url in targets.items():
                row = asyncio.run(point(kind, url, batch, c, args.duration))
                log(f"{kind:12s} c={c:<3d} {row['rps']:7.1f} req/s  p50 {row['p50_ms']:.1f} ms  "
                    f"p99 {row['p99_ms']:.1f} ms  errors {row['errors']}")
                rows.append(row)
    base = {r["c"]: r["rps"] for r in rows if r["transport"] == "grpc"}
    for r in rows:
        r["vs_grpc"] = round(r["rps"] / base[r["c"]], 2) if base.get(r["c"]) else None
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(table(rows, [("transport", "transport"), ("c", "c"), ("rps", "req/s"), ("p50_ms", "p50 ms"),
                       ("p99_ms", "p99 ms"), ("errors", "errors"), ("vs_grpc", "x gRPC via gateway")]))


if __name__ == "__main__":
    main()
