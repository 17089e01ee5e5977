"""Freed heap memory goes back to the OS: a flood's peak does not stay resident for good."""

from __future__ import annotations

import asyncio
import ctypes.util
import sys

import pytest

from service.memory import release_free_memory, release_when_idle

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


def test_memory_is_released_once_after_requests_only_when_none_is_open() -> None:
    # the timer's decisions, driven by a scripted activity sequence; the release itself is recorded
    # instead of trimming (the trim is tested above)
    script = iter([(3, 10), (0, 12), (0, 12), (1, 13), (0, 13), (0, 20)])
    released: list[int] = []
    done = asyncio.Event()

    def activity() -> tuple[int, int]:
        try:
            return next(script)
        except StopIteration:
            done.set()
            return 0, 20

    async def run() -> None:
        task = asyncio.create_task(release_when_idle(0.001, activity, lambda: released.append(1) or True))
        await asyncio.wait_for(done.wait(), 5)
        task.cancel()

    asyncio.run(run())
    # busy (3 open): no; idle after new work: yes; idle, nothing new: no; busy: no;
    # idle after new work: yes; idle after new work: yes
    assert len(released) == 3
