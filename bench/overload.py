"""Overload: open-loop load at 2x and 10x what the gateway sustains, bounded in time.

1. start ``visiongate serve`` on a free port; measure the sustainable rate R (closed loop,
   concurrency 2x cores, raw JPEG bodies)
2. Poisson arrivals at 2R, then 10R, for ``-d`` seconds each (requests still open ``--grace`` s
   after a phase are counted as timeouts); at most ``--max-open`` requests open at once
3. right after: closed loop at concurrency 1, which must be normal service (no errors)
Reported per phase: served img/s, admitted requests' p50/p99, the fraction answered 503 and how
many of those carried Retry-After and came back fast (< 100 ms), 504s, other 5xx (must be 0), and
the server's RSS before/peak/after, and after a few quiet seconds (must come back).

usage: python bench/overload.py [-d 8] [--factors 2 10]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    MODEL,
    NCPU,
    client_session,
    closed_loop,
    http_sender,
    load_images,
    log,
    percentiles_ms,
    rss_bytes,
    start_gateway,
    table,
)

FAST_S = 0.1


async def open_loop(session: object, url: str, jpegs: list[bytes], rate: float, duration_s: float,
                    grace_s: float, max_open: int, pid: int) -> dict[str, object]:
    import aiohttp

    assert isinstance(session, aiohttp.ClientSession)
    ok_lat: list[float] = []
    refused: list[tuple[float, bool]] = []  # (latency, had Retry-After)
    counts = {"504": 0, "other_5xx": 0, "other": 0, "client_timeout": 0, "not_sent": 0}
    rss = [rss_bytes(pid)]
    tasks: set[asyncio.Task[None]] = set()

    async def one(data: bytes) -> None:
        s = time.perf_counter()
        try:
            async with session.post(url, data=data, headers={"Content-Type": "image/jpeg"},
                                    timeout=aiohttp.ClientTimeout(total=duration_s + grace_s)) as r:
                await r.read()
                lat = time.perf_counter() - s
                if r.status == 200:
                    ok_lat.append(lat)
                elif r.status == 503:
                    refused.append((lat, "Retry-After" in r.headers))
                elif r.status == 504:
                    counts["504"] += 1
                elif r.status >= 500:
                    counts["other_5xx"] += 1
                else:
                    counts["other"] += 1
        except (TimeoutError, aiohttp.ClientError):
            counts["client_timeout"] += 1

    t0 = time.perf_counter()
    nxt, sent, k = t0, 0, 0
    while (now := time.perf_counter()) < t0 + duration_s:
        if now < nxt:
            await asyncio.sleep(min(nxt - now, 0.05))
            if time.perf_counter() - t0 > k * 0.5:  # sample memory twice a second
                k += 1
                rss.append(rss_bytes(pid))
            continue
        nxt += random.expovariate(rate)
        if len(tasks) >= max_open:
            counts["not_sent"] += 1
            continue
        task = asyncio.ensure_future(one(jpegs[sent % len(jpegs)]))
        sent += 1
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=grace_s)
    for t in list(tasks):
        t.cancel()
    elapsed = time.perf_counter() - t0
    rss.append(rss_bytes(pid))
    p50, p99 = percentiles_ms(ok_lat)
    n_ref = len(refused)
    answered = len(ok_lat) + n_ref + sum(counts.values()) - counts["not_sent"]
    return {"offered_rps": round(rate, 1), "sent": sent, "served_img_s": round(len(ok_lat) / elapsed, 1),
            "admitted_p50": p50, "admitted_p99": p99,
            "refused_503_pct": round(100 * n_ref / max(1, answered), 1),
            "503_retry_after_pct": round(100 * sum(h for _, h in refused) / n_ref, 1) if n_ref else None,
            "503_fast_pct": round(100 * sum(lat < FAST_S for lat, _ in refused) / n_ref, 1) if n_ref else None,
            "503_p99": percentiles_ms([lat for lat, _ in refused])[1] if n_ref else None,
            **counts, "rss_max_mb": round(max(rss) / 2**20, 1), "rss_end_mb": round(rss[-1] / 2**20, 1)}


async def run(url: str, jpegs: list[bytes], pid: int, factors: list[float], duration_s: float,
              grace_s: float, max_open: int) -> tuple[float, list[dict[str, object]], dict[str, object], float]:
    session = client_session()
    try:
        send = http_sender(session, url)
        base = await closed_loop("sustain", send, jpegs, 2 * NCPU, duration_s, warmup_s=1.0, server_pid=pid)
        rss0 = rss_bytes(pid) / 2**20
        log(f"sustainable: {base.img_s} img/s (p99 {base.p99_ms} ms); RSS {rss0:.0f} MB")
        phases = []
        for f in factors:
            log(f"{f:g}x: {f * base.img_s:.0f} requests/s for {duration_s:g} s")
            r = await open_loop(session, url, jpegs, f * base.img_s, duration_s, grace_s, max_open, pid)
            phases.append({"phase": f"{f:g}x", **r})
        t0 = time.perf_counter()  # the server may still be finishing work its callers gave up on
        while time.perf_counter() - t0 < 60:
            try:
                await send(jpegs[0])
                break
            except Exception:
                await asyncio.sleep(0.2)
        recovered_s = time.perf_counter() - t0
        after = (await closed_loop("after", send, jpegs, 1, min(duration_s, 4.0), warmup_s=0.0,
                                   server_pid=pid)).row()
        after["recovered_s"] = round(recovered_s, 1)
        return base.img_s, phases, after, rss0
    finally:
        await session.close()  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--duration", type=float, default=8.0, help="seconds per phase")
    ap.add_argument("--factors", type=float, nargs="+", default=[2.0, 10.0])
    ap.add_argument("--grace", type=float, default=10.0, help="seconds to wait for open requests after a phase")
    ap.add_argument("--max-open", type=int, default=2000, help="client-side cap on open requests")
    ap.add_argument("--settle", type=float, default=8.0, help="seconds of quiet before the last RSS reading")
    a = ap.parse_args()
    jpegs = load_images()
    server = start_gateway(name="visiongate-overload")
    try:
        rate, phases, after, rss0 = asyncio.run(run(f"{server.base_url}/v1/classify?model={MODEL}", jpegs,
                                                    server.proc.pid, a.factors, a.duration, a.grace, a.max_open))
        rss_after = rss_bytes(server.proc.pid) / 2**20
        time.sleep(a.settle)  # the gateway hands freed memory back once quiet (checked every 5 s)
        rss_end = rss_bytes(server.proc.pid) / 2**20
    finally:
        server.stop()
    print(table(phases, [("phase", "load"), ("offered_rps", "offered req/s"), ("sent", "sent"),
                         ("served_img_s", "served img/s"), ("admitted_p50", "admitted p50 ms"),
                         ("admitted_p99", "admitted p99 ms"), ("refused_503_pct", "503 %"),
                         ("503_retry_after_pct", "503 w/ Retry-After %"), ("503_fast_pct", "503 < 100 ms %"),
                         ("503_p99", "503 p99 ms"), ("504", "504"), ("other_5xx", "other 5xx"),
                         ("client_timeout", "client timeouts"), ("not_sent", "not sent (client cap)"),
                         ("rss_max_mb", "RSS max MB")]))
    other_5xx = sum(int(p["other_5xx"]) for p in phases)  # type: ignore[call-overload]
    rss_max = max(float(p["rss_max_mb"]) for p in phases)  # type: ignore[arg-type]
    print(f"\nsustainable rate: {rate} img/s (closed loop, concurrency {2 * NCPU})")
    print(f"first success {after['recovered_s']} s after the flood; then concurrency 1, {after['img_s']} img/s, "
          f"p50 {after['p50_ms']} ms, p99 {after['p99_ms']} ms, "
          f"errors {after['errors']}: {'PASS' if after['errors'] == 0 else 'FAIL'}")
    print(f"5xx other than 503/504: {other_5xx}: {'PASS' if other_5xx == 0 else 'FAIL'}")
    flat = rss_end <= rss0 * 1.25 + 50
    print(f"RSS: {rss0:.0f} MB before, {rss_max:.0f} MB peak, {rss_after:.0f} MB right after, {rss_end:.0f} MB "
          f"after {a.settle:g} s quiet: {'PASS' if flat else 'FAIL'} (settled <= 1.25x before + 50 MB)")


if __name__ == "__main__":
    main()
