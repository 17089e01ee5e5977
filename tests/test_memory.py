"""Freed heap memory goes back to the OS: a flood's peak does not stay resident for good."""

from __future__ import annotations

import asyncio
import ctypes.util
import sys

import pytest

from visiongate.service.memory import release_free_memory, release_when_quiet

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"),
                           reason="malloc_trim is a glibc call")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@glibc
def test_release_returns_memory_freed_in_many_small_blocks() -> None:
    # many small blocks (below glibc's mmap threshold) are what a flood of requests leaves behind:
    # freed, they stay in the arena until trimmed; keep every 64th alive so the heap top cannot
    # simply shrink without a trim of the pages in between
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # ~256 MB
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    kept = blocks[::64]
    del blocks
    before = _rss_bytes()
    assert release_free_memory() is True
    after = _rss_bytes()
    assert before - after > 100 * 2**20, (before, after)
    assert kept  # still alive: only free memory went back


def test_memory_is_released_after_a_flood_once_the_gateway_is_quiet_and_not_before() -> None:
    # the timer's decisions, driven by a scripted (open requests, resident MB) sequence; the release
    # itself is recorded instead of trimming (the trim is tested above)
    MB = 2**20
    script = iter([
        (0, 400),    # reference level after start-up
        (300, 700),  # flood: grown, but 300 open -> wait
        (1, 690),    # flood over: quiet and 290 MB above -> release (it drops to 420)
        (1, 420),    # quiet, 20 MB above the new reference -> nothing to do
        (0, 430),    # still under the margin -> nothing
        (2, 600),    # grown again and quiet (2 inference threads) -> release
    ])
    released: list[int] = []
    current = {"open": 0, "rss": 0}
    done = asyncio.Event()

    def step() -> None:
        try:
            current["open"], current["rss"] = next(script)
        except StopIteration:
            done.set()

    def resident() -> int:
        return current["rss"] * MB

    def release() -> bool:
        released.append(current["rss"])
        current["rss"] = 420 if current["rss"] == 690 else 450
        return True

    async def run() -> None:
        step()
        task = asyncio.create_task(release_when_quiet(0.001, lambda: current["open"], quiet_at=2,
                                                      margin_bytes=64 * MB, release=release,
                                                      resident=resident))
        while not done.is_set():
            await asyncio.sleep(0.004)
            step()
        task.cancel()

    asyncio.run(run())
    assert released == [690, 600]
