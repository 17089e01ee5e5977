"""Per-key rate limits: requests per second and images per minute, as token buckets.

Requests are counted by the auth middleware before anything is read. Images are known only once the
request is parsed, so the service calls ``charge_images(n)`` (a no-op outside an authenticated
request, or for a key without an image limit) and a ``RateLimited`` raised there becomes the 429.
"""

from __future__ import annotations

import math
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from ..errors import RateLimited
from .keys import KeyEntry


@dataclass
class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity``; starts full."""

    rate: float
    capacity: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def take(self, n: float = 1.0, now: float | None = None) -> float:
        """Take ``n`` tokens; 0.0 when granted, else the seconds until they would be (nothing taken)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


@dataclass
class KeyLimits:
    """The buckets of one key, made from its entry's limits (rebuilt when they change)."""

    entry: KeyEntry
    requests: TokenBucket | None
    images: TokenBucket | None

    @classmethod
    def of(cls, entry: KeyEntry) -> KeyLimits:
        rps, ipm = entry.requests_per_s, entry.images_per_min
        # a second's worth of requests may come at once; a minute's worth of images
        return cls(entry, TokenBucket(rps, max(1.0, rps)) if rps else None,
                   TokenBucket(ipm / 60.0, max(1.0, ipm)) if ipm else None)

    def charge_request(self) -> None:
        if self.requests is not None:
            wait = self.requests.take()
            if wait:
                raise RateLimited(f"key {self.entry.name!r} is limited to {self.entry.requests_per_s:g} "
                                  "requests per second", retry_after_s=wait, limit="requests_per_s")

    def charge_images(self, n: int) -> None:
        if self.images is None or n <= 0:
            return
        if n > self.images.capacity:
            raise RateLimited(f"{n} images in one request exceed key {self.entry.name!r}'s limit of "
                              f"{self.entry.images_per_min:g} images per minute", retry_after_s=60,
                              limit="images_per_min")
        wait = self.images.take(n)
        if wait:
            raise RateLimited(f"key {self.entry.name!r} is limited to {self.entry.images_per_min:g} images "
                              "per minute", retry_after_s=wait, limit="images_per_min")


class RateLimiter:
    """Buckets per key name, for the keys in force."""

    def __init__(self) -> None:
        self._by_name: dict[str, KeyLimits] = {}

    def limits(self, entry: KeyEntry) -> KeyLimits:
        current = self._by_name.get(entry.name)
        if current is None or current.entry != entry:
            current = self._by_name[entry.name] = KeyLimits.of(entry)
        return current


@dataclass
class RequestQuota:
    """What the current request may still spend, and the refusal if it was refused (read by the
    middleware to add Retry-After and count it: the refusal may be raised on another thread)."""

    limits: KeyLimits
    refusal: RateLimited | None = None


_current: ContextVar[RequestQuota | None] = ContextVar("visiongate_request_quota", default=None)


def bind(quota: RequestQuota | None) -> object:
    """Make ``quota`` the current request's (the auth middleware does this); returns a reset token."""
    return _current.set(quota)


def unbind(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def uncharged() -> None:
    """From here on, the current task's images count against no key: for work a request does on its
    own behalf in a task of its own (a segmenter's presence gate), whose images were charged once."""
    _current.set(None)


def charge_images(n: int) -> None:
    """Count ``n`` images against the current request's key; ``RateLimited`` (429) past its limit."""
    quota = _current.get()
    if quota is None:
        return
    try:
        quota.limits.charge_images(n)
    except RateLimited as exc:
        quota.refusal = exc
        raise


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
