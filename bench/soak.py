"""Soak: mixed traffic for a bounded time while the gateway's resident memory is sampled.

One real ``visiongate serve`` on loopback (the default models), ``-c`` clients in a closed loop,
each request picked in turn from: classify a photo, detect on a photo, super-resolve a large photo
(1000x1000 upscaled x2: the request that once took RSS from 350 MB to 2.5 GB and kept it), and a
super-resolve whose client gives up after 0.3 s (its work must stop, its memory come back).
RSS is sampled every second; the script prints start, peak, the last minute's range and the slope
of the second half (MB per minute; flat means bounded), and writes a CSV and a PNG of the curve.

usage: python bench/soak.py [-d 600] [-c 6] [--out bench/results/soak]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import client_session, load_images, log, rss_bytes, start_gateway


def big_png() -> bytes:
    import io

    from PIL import Image
    from skimage import data

    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((1000, 1000), Image.Resampling.BICUBIC))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


async def traffic(url: str, clients: int, duration_s: float, counts: dict[str, int]) -> None:
    import aiohttp

    jpegs = load_images(16)
    large = big_png()
    kinds = ["classify", "detect", "classify", "super-resolve", "classify", "detect", "abandoned"]
    end = time.monotonic() + duration_s

    async with client_session() as session:
        assert isinstance(session, aiohttp.ClientSession)

        async def client(k: int) -> None:
            i = k
            while time.monotonic() < end:
                kind = kinds[i % len(kinds)]
                i += 1
                body, ctype, path = jpegs[i % len(jpegs)], "image/jpeg", f"/v1/{kind}"
                timeout = aiohttp.ClientTimeout(total=120)
                if kind in ("super-resolve", "abandoned"):
                    body, ctype, path = large, "image/png", "/v1/super-resolve"
                    if kind == "abandoned":
                        timeout = aiohttp.ClientTimeout(total=0.3)
                try:
                    async with session.post(url + path, data=body, headers={"content-type": ctype},
                                            timeout=timeout) as r:
                        await r.read()
                        counts[f"{kind} {r.status}"] = counts.get(f"{kind} {r.status}", 0) + 1
                except (TimeoutError, aiohttp.ClientError):
                    counts[f"{kind} gave up"] = counts.get(f"{kind} gave up", 0) + 1

        await asyncio.gather(*(client(k) for k in range(clients)))


async def sample(pid: int, duration_s: float, points: list[tuple[float, float]]) -> None:
    t0 = time.monotonic()
    while (t := time.monotonic() - t0) < duration_s:
        points.append((t, rss_bytes(pid) / 2**20))
        await asyncio.sleep(1.0)


def plot(points: list[tuple[float, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no picture (the CSV has the curve)")
        return
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([t / 60 for t, _ in points], [m for _, m in points])
    ax.set_xlabel("minutes of mixed traffic")
    ax.set_ylabel("gateway RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-d", "--duration", type=float, default=600.0)
    ap.add_argument("-c", "--clients", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "soak")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = start_gateway(name="soak")
    points: list[tuple[float, float]] = []
    counts: dict[str, int] = {}
    try:
        rest = rss_bytes(server.proc.pid) / 2**20

        async def both() -> None:
            await asyncio.gather(traffic(server.base_url, args.clients, args.duration, counts),
                                 sample(server.proc.pid, args.duration + 10, points))

        asyncio.run(both())
    finally:
        server.stop()
    (args.out / "rss.csv").write_text("seconds,rss_mb\n" + "".join(f"{t:.1f},{m:.1f}\n" for t, m in points))
    plot(points, args.out / "rss.png")
    mb = np.array([m for _, m in points])
    ts = np.array([t for t, _ in points])
    half = ts >= ts[-1] / 2
    slope = float(np.polyfit(ts[half] / 60, mb[half], 1)[0]) if half.sum() > 2 else float("nan")
    last = mb[ts >= ts[-1] - 60]
    print(f"RSS at rest {rest:.0f} MB; peak {mb.max():.0f} MB; last minute {last.min():.0f}-{last.max():.0f} MB; "
          f"second-half slope {slope:+.1f} MB/min")
    print("answers:", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    print(f"curve: {args.out / 'rss.csv'}, {args.out / 'rss.png'}")


if __name__ == "__main__":
    main()
