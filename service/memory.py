"""Giving freed heap memory back to the operating system.

glibc keeps memory that Python and numpy have freed inside its per-thread arenas. After a flood
(hundreds of request bodies and tensors alive at once) the process keeps that peak as resident
memory for good, although nothing uses it: in Kubernetes that reads as a leak and counts against
the pod's limit. ``malloc_trim(0)`` hands whole free pages of every arena back.

The gateway checks on a timer (``VISIONGATE_MEMORY_RELEASE_INTERVAL_S``) and trims when the
resident set has grown past its level after start-up by ``margin`` and the gateway is quiet (no
more requests open than it has inference threads). A trim that gives back a flood's worth of pages
takes ~35 ms and holds each arena's lock meanwhile, stalling threads that allocate, so it is not
done while a flood is still on (the admission limits bound memory then) nor over and over under a
steady load (the level after a trim becomes the new reference). Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Callable


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; True when the C library could do it."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


def resident_bytes() -> int:
    """This process's resident set size (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


async def release_when_quiet(interval_s: float, open_requests: Callable[[], int], quiet_at: int,
                             margin_bytes: int = 64 * 2**20,
                             release: Callable[[], bool] = release_free_memory,
                             resident: Callable[[], int] = resident_bytes) -> None:
    """Every ``interval_s``: when at most ``quiet_at`` requests are open and the resident set is
    ``margin_bytes`` above the reference level, release freed memory. A lifespan task; runs until
    cancelled."""
    if interval_s <= 0 or (release is release_free_memory and _malloc_trim is None):
        return
    loop = asyncio.get_running_loop()
    reference = resident()
    while True:
        await asyncio.sleep(interval_s)
        if open_requests() > quiet_at or resident() - reference < margin_bytes:
            continue
        with contextlib.suppress(RuntimeError):  # executor shut down while the app stops
            await loop.run_in_executor(None, release)
        # what could not be given back is in use: measure growth from here on
        reference = max(reference, resident())
