"""Giving freed heap memory back to the operating system.

glibc keeps memory that Python and numpy have freed inside its per-thread arenas. After a flood
(hundreds of request bodies and tensors alive at once) the process keeps that peak as resident
memory for good, although nothing uses it: in Kubernetes that reads as a leak and counts against
the pod's limit. ``malloc_trim(0)`` hands whole free pages of every arena back.

The gateway checks on a timer (``VISIONGATE_MEMORY_RELEASE_INTERVAL_S``) and trims only when no
request is open: the trim holds each arena's lock while it walks it, so trimming under load would
stall the threads that allocate (measured as a longer latency tail). Memory therefore returns when
a flood ends, not during it; during it, the admission limits bound it. Elsewhere than glibc it
does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
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
    return trim  # type: ignore[no-any-return]


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; True when the C library could do it."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


async def release_when_idle(interval_s: float, activity: Callable[[], tuple[int, int]],
                            release: Callable[[], bool] = release_free_memory) -> None:
    """Every ``interval_s``, trim when no request is open and some arrived since the last look.
    ``activity()``: (requests open now, requests started so far). A lifespan task; runs until
    cancelled."""
    if interval_s <= 0 or (release is release_free_memory and _malloc_trim is None):
        return
    loop = asyncio.get_running_loop()
    last_seen = -1
    while True:
        await asyncio.sleep(interval_s)
        open_now, started = activity()
        if open_now or started == last_seen:
            continue
        last_seen = started
        with contextlib.suppress(RuntimeError):  # executor shut down while the app stops
            await loop.run_in_executor(None, release)
