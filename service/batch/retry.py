"""Retrying transient failures: capped exponential backoff with full jitter, honouring Retry-After.

Transient: 503 (overloaded, backend down, model not ready), 504/deadline, timeouts and dropped
connections, and a 502 from a proxy in front of the gateway: the engines translate all of these
into ``ServiceUnavailable`` / ``DeadlineExceeded``. Everything else, 4xx above all, is the image's
own fault (or a model failing on it) and is not retried.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import DeadlineExceeded, ServiceUnavailable, VisionGateError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries in all, the first included
    base_s: float = 0.25  # backoff before the 2nd try, before jitter
    cap_s: float = 20.0  # no backoff longer than this
    max_retry_after_s: float = 60.0  # a server's Retry-After is honoured up to this

    def backoff_s(self, retry: int, rand: float) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)); ``retry`` counts from 0."""
        return float(rand * min(self.cap_s, self.base_s * (2 ** retry)))

    def delay_s(self, exc: BaseException, retry: int, rand: float) -> float:
        delay = self.backoff_s(retry, rand)
        if isinstance(exc, ServiceUnavailable):
            delay = max(delay, min(exc.retry_after_s, self.max_retry_after_s))
        return delay


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ServiceUnavailable | DeadlineExceeded)


class RetriesExhausted(Exception):
    """A transient failure outlived every retry; the run stops so a re-run can resume it."""

    def __init__(self, last: VisionGateError, attempts: int) -> None:
        super().__init__(f"{last.type}: {last.message} (after {attempts} tries)")
        self.last = last
        self.attempts = attempts


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, *,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                       rand: Callable[[], float] = random.random,
                       on_retry: Callable[[VisionGateError, float], None] | None = None) -> T:
    """Await ``call()``; on a transient ``VisionGateError`` wait and try again, up to ``attempts``."""
    for retry in range(policy.attempts):
        try:
            return await call()
        except VisionGateError as exc:
            if not is_transient(exc):
                raise
            if retry == policy.attempts - 1:
                raise RetriesExhausted(exc, policy.attempts) from exc
            delay = policy.delay_s(exc, retry, rand())
            if on_retry is not None:
                on_retry(exc, delay)
            await sleep(delay)
    raise AssertionError("unreachable")
