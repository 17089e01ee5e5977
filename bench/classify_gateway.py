"""Gateway vs hand-written in-process loop: what does serving cost? (issue 3)

Starts ``visiongate serve`` on a free loopback port with the repository's EfficientNet-Lite0, sends
the same 64 real JPEGs (scikit-image photos, ~640x480) as raw ``image/jpeg`` bodies at each
concurrency, then runs the hand-written loop (decode + onnxruntime in this process, one caller per
core at most) on the same images, and prints both img/s and gateway/raw. The load client shares the
machine's cores with the gateway; the in-process loop has no client, so the ratio is conservative.

usage: python bench/classify_gateway.py [-c 1 8 32] [-d 8] [--multipart] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    MODEL,
    NCPU,
    chelsea_jpeg,
    client_session,
    closed_loop,
    http_sender,
    load_images,
    log,
    start_gateway,
    table,
)
from bench.inprocess import raw_at

CAT_IDS = range(281, 286)  # ImageNet tabby/tiger/Persian/Siamese/Egyptian cat


async def gateway_point(url: str, jpegs: list[bytes], concurrency: int, duration_s: float,
                        multipart: bool, pid: int) -> dict[str, object]:
    session = client_session()
    try:
        send = http_sender(session, url, multipart=multipart)
        cat = await send(chelsea_jpeg())
        if cat not in CAT_IDS:
            raise SystemExit(f"the chelsea photo came back as class {cat}, not a cat: wrong model?")
        return (await closed_loop("gateway", send, jpegs, concurrency, duration_s, server_pid=pid)).row()
    finally:
        await session.close()  # type: ignore[attr-defined]


def cpu_ms_per_img(point: dict[str, object]) -> float | None:
    """CPU time the server (or the in-process loop) spent per image: steadier than img/s on a busy host."""
    cores, rate = point.get("server_cores"), float(point["img_s"])  # type: ignore[arg-type]
    return round(float(cores) * 1000 / rate, 2) if cores is not None and rate > 0 else None  # type: ignore[arg-type]


def compare_point(url: str, jpegs: list[bytes], c: int, duration_s: float, multipart: bool,
                  pid: int) -> dict[str, object]:
    """One concurrency: the gateway, then the in-process loop right after (same machine state)."""
    g = asyncio.run(gateway_point(url, jpegs, c, duration_s, multipart, pid))
    raw = raw_at(jpegs, c, duration_s)
    return {"concurrency": c, "gw_img_s": g["img_s"], "raw_img_s": raw["img_s"],
            "ratio": round(float(g["img_s"]) / float(raw["img_s"]), 2),  # type: ignore[arg-type]
            "gw_cpu_ms": cpu_ms_per_img(g), "raw_cpu_ms": cpu_ms_per_img(raw),
            "gw_p50": g["p50_ms"], "gw_p99": g["p99_ms"], "raw_p50": raw["p50_ms"],
            "raw_p99": raw["p99_ms"], "errors": g["errors"], "raw_case": raw["case"],
            "server_cores": g.get("server_cores"), "client_cores": g.get("client_cores"),
            "foreign_pct": max(float(g.get("foreign_pct", 0)), float(raw["foreign_pct"]))}  # type: ignore[arg-type]


COLUMNS = [("concurrency", "conc"), ("gw_img_s", "gateway img/s"), ("raw_img_s", "raw img/s"),
           ("ratio", "gateway/raw"), ("gw_cpu_ms", "gw CPU ms/img"), ("raw_cpu_ms", "raw CPU ms/img"),
           ("gw_p50", "gw p50 ms"), ("gw_p99", "gw p99 ms"),
           ("raw_p50", "raw p50 ms"), ("raw_p99", "raw p99 ms"), ("errors", "errors"),
           ("raw_case", "raw case"), ("server_cores", "server cores"), ("client_cores", "client cores"),
           ("foreign_pct", "foreign %")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("-d", "--duration", type=float, default=8.0, help="seconds per point")
    ap.add_argument("--multipart", action="store_true", help="send multipart 'file' instead of a raw body")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON lines")
    a = ap.parse_args()
    jpegs = load_images()
    log(f"{len(jpegs)} JPEGs, {NCPU} cores, {a.duration:g} s per point")
    server = start_gateway()
    rows = []
    try:
        url = f"{server.base_url}/v1/classify?model={MODEL}"
        for c in a.concurrency:
            rows.append(compare_point(url, jpegs, c, a.duration, a.multipart, server.proc.pid))
            if a.json:
                print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()
    print(table(rows, COLUMNS))
    print(f"\n{'multipart' if a.multipart else 'raw image/jpeg'} bodies; client and server share {NCPU} cores; "
          "foreign % = other processes' CPU (img/s is noisy when it is high; CPU ms/img much less so)")


if __name__ == "__main__":
    main()
