"""What does the gateway add in front of Triton? (issue 6)

The same classify load (64 real JPEGs, scikit-image photos ~640x480, raw ``image/jpeg`` bodies)
at each concurrency, two ways, side by side:
  gateway   client -> visiongate (VISIONGATE_BACKEND=triton, gRPC) -> Triton
  direct    client -> Triton with tritonclient.grpc.aio; the client decodes and preprocesses each
            JPEG itself (the gateway's own ``prepare``, in a 2-thread pool, timed inside the
            request) and sends the uint8 tensor as binary; top-1 from the returned logits.
Triton is the real tritonserver from nvidia-pytriton serving the exported ONNX model through a
python-backend model (tests/backends/triton_server.py); pass --triton-grpc HOST:PORT to use a
running one instead. The client shares the machine's cores with both servers.

usage: python bench/bench_triton_overhead.py [-c 1 8 32] [-d 8] [--triton-grpc HOST:PORT] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "backends"))
from bench.common import (
    MODEL,
    NCPU,
    REPOSITORY,
    SCRATCH,
    chelsea_jpeg,
    client_session,
    closed_loop,
    http_sender,
    load_images,
    log,
    start_gateway,
    table,
)

CAT_IDS = range(281, 286)


@contextlib.contextmanager
def triton_grpc(url: str | None) -> Iterator[tuple[str, int | None]]:
    """(gRPC address, pid) of a Triton serving the repository's models: the given one, or our own."""
    if url:
        yield url, None
        return
    from triton_server import TritonServer, python_repository

    SCRATCH.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="triton-overhead-", dir=SCRATCH))  # private: other benches use SCRATCH
    python_repository(REPOSITORY, work / "repo", models=[MODEL])
    server = TritonServer(work / "repo", work)
    server.start()
    log(f"tritonserver ready in {server.startup_s:.1f} s (log: {server.log_path})")
    try:
        assert server.proc is not None
        yield server.grpc_url, server.proc.pid
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


async def gateway_point(url: str, jpegs: list[bytes], concurrency: int, duration_s: float,
                        pid: int) -> dict[str, object]:
    session = client_session()
    try:
        send = http_sender(session, url)
        if await send(chelsea_jpeg()) not in CAT_IDS:
            raise SystemExit("the gateway did not answer a cat for chelsea: wrong model?")
        return (await closed_loop("gateway", send, jpegs, concurrency, duration_s, server_pid=pid)).row()
    finally:
        await session.close()  # type: ignore[attr-defined]


async def direct_point(grpc_url: str, jpegs: list[bytes], concurrency: int,
                       duration_s: float, pid: int | None) -> dict[str, object]:
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpcaio

    from visiongate.service.inference import prepare
    from visiongate.service.repository import read_model
    from visiongate.service.settings import Settings

    spec, settings = read_model(REPOSITORY / MODEL).spec, Settings(repository=REPOSITORY)
    pool = ThreadPoolExecutor(2, thread_name_prefix="prep")
    client = grpcaio.InferenceServerClient(grpc_url)
    loop = asyncio.get_running_loop()

    async def send(data: bytes) -> int:
        tensor = (await loop.run_in_executor(pool, prepare, data, spec, settings)).tensor[None]
        image = grpcclient.InferInput(spec.input.name, list(tensor.shape), "UINT8")
        image.set_data_from_numpy(tensor)
        result = await client.infer(MODEL, [image])
        return int(np.argmax(result.as_numpy(spec.outputs[0].name)[0]))

    try:
        if await send(chelsea_jpeg()) not in CAT_IDS:
            raise SystemExit("Triton did not answer a cat for chelsea: wrong model?")
        return (await closed_loop("direct", send, jpegs, concurrency, duration_s, server_pid=pid)).row()
    finally:
        await client.close()
        pool.shutdown()


COLUMNS = [("concurrency", "conc"), ("gw_img_s", "gateway->Triton img/s"), ("direct_img_s", "direct img/s"),
           ("ratio", "gateway/direct"), ("gw_p50", "gw p50 ms"), ("gw_p99", "gw p99 ms"),
           ("direct_p50", "direct p50 ms"), ("direct_p99", "direct p99 ms"), ("errors", "errors"),
           ("triton_cores", "Triton cores (direct)"), ("client_cores", "client cores (direct)"),
           ("foreign_pct", "foreign % (direct)")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("-d", "--duration", type=float, default=8.0, help="seconds per point")
    ap.add_argument("--triton-grpc", help="HOST:PORT of a running Triton (default: start one)")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON lines")
    a = ap.parse_args()
    jpegs = load_images()
    log(f"{len(jpegs)} JPEGs, {NCPU} cores, {a.duration:g} s per point")
    rows = []
    with triton_grpc(a.triton_grpc) as (grpc_url, triton_pid):
        gateway = start_gateway(env={"VISIONGATE_BACKEND": "triton", "VISIONGATE_TRITON_URL": grpc_url,
                                     "VISIONGATE_TRITON_PROTOCOL": "grpc"}, name="visiongate-triton")
        try:
            url = f"{gateway.base_url}/v1/classify?model={MODEL}&top_k=5"
            for c in a.concurrency:
                g = asyncio.run(gateway_point(url, jpegs, c, a.duration, gateway.proc.pid))
                d = asyncio.run(direct_point(grpc_url, jpegs, c, a.duration, triton_pid))
                rows.append({"concurrency": c, "gw_img_s": g["img_s"], "direct_img_s": d["img_s"],
                             "ratio": round(float(g["img_s"]) / max(float(d["img_s"]), 1e-9), 2),  # type: ignore[arg-type]
                             "gw_p50": g["p50_ms"], "gw_p99": g["p99_ms"], "direct_p50": d["p50_ms"],
                             "direct_p99": d["p99_ms"], "errors": int(g["errors"]) + int(d["errors"]),  # type: ignore[call-overload]
                             "triton_cores": d.get("server_cores"), "client_cores": d.get("client_cores"),
                             "foreign_pct": d.get("foreign_pct")})
                if a.json:
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            gateway.stop()
    print(table(rows, COLUMNS))
    print(f"\nclient, gateway and Triton share {NCPU} cores; foreign % = CPU of processes other than "
          "Triton and the client during the direct point (the machine is shared: img/s is noisy when high)")


if __name__ == "__main__":
    main()
