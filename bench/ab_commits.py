"""A/B of the gateway at two commits, in one run: classify img/s at c=32 and p50 at c=1.

Each commit's code is checked out in a temporary git worktree and served alone (one server at a
time, the same exported repository and the same 64 real JPEGs as multipart uploads). Rounds run
in both orders (A B B A ...) so drift of the machine's speed hits both sides alike; the medians
and the B/A ratios are printed.

usage: python bench/ab_commits.py [--base a34f67e] [--head HEAD] [-c 1 32] [-d 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    MODEL,
    REPOSITORY,
    ROOT,
    Point,
    client_session,
    closed_loop,
    free_port,
    http_sender,
    load_images,
    start_server,
)


def serve(tree: Path, name: str):  # type: ignore[no-untyped-def]
    port = free_port()
    return start_server(name, [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export", "--host",
                               "127.0.0.1", "--port", str(port), "--repository", str(REPOSITORY)],
                        f"http://127.0.0.1:{port}", "/readyz", env={"VISIONGATE_LOG_LEVEL": "warning"}, cwd=tree)


async def measure(url: str, pid: int, concurrency: int, duration_s: float, label: str) -> Point:
    payloads = load_images()
    async with client_session() as session:  # type: ignore[attr-defined]
        send = http_sender(session, f"{url}/v1/classify?model={MODEL}", multipart=True)
        return await closed_loop(label, send, payloads, concurrency, duration_s, server_pid=pid)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="a34f67e")
    ap.add_argument("--head", default="HEAD")
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("-d", "--duration", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vg-ab-") as tmp:
        trees = {}
        for side, rev in (("A", args.base), ("B", args.head)):
            tree = Path(tmp) / side
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
            trees[side] = tree
        try:
            results: dict[tuple[str, int], list[Point]] = {}
            order = ["A", "B", "B", "A"] * args.rounds
            for side in order:
                server = serve(trees[side], f"ab-{side}")
                try:
                    for c in args.concurrency:
                        point = asyncio.run(measure(server.base_url, server.proc.pid, c, args.duration, side))
                        results.setdefault((side, c), []).append(point)
                        print(f"{side} c={c}: {point.img_s} img/s p50 {point.p50_ms} ms p99 {point.p99_ms} ms "
                              f"errors {point.errors}", flush=True)
                finally:
                    server.stop()
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"\nA = {args.base}, B = {args.head}; medians of {2 * args.rounds} runs each (both orders)")
    for c in args.concurrency:
        a, b = results[("A", c)], results[("B", c)]
        ia, ib = median(p.img_s for p in a), median(p.img_s for p in b)
        pa, pb = median(p.p50_ms for p in a), median(p.p50_ms for p in b)
        print(f"c={c}: img/s A {ia:.1f} B {ib:.1f} (B/A {ib / ia:.3f}); p50 A {pa:.1f} ms B {pb:.1f} ms "
              f"(B/A {pb / pa:.3f})")


if __name__ == "__main__":
    main()
