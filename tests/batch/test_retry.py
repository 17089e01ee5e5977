"""Transient failures are retried with capped, jittered backoff; an image's own fault is not."""

from __future__ import annotations

import asyncio

import pytest

from visiongate.service.batch.retry import RetriesExhausted, RetryPolicy, is_transient, with_retries
from visiongate.service.errors import (
    BackendError,
    BackendUnavailable,
    DeadlineExceeded,
    InvalidImage,
    ModelNotFound,
    Overloaded,
)


class Flaky:
    """A real callable that fails with the given errors, in order, then answers."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "scored"


def _run(flaky: Flaky, policy: RetryPolicy, rand: float = 1.0) -> tuple[str, list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    result = asyncio.run(with_retries(flaky, policy, sleep=sleep, rand=lambda: rand))
    return result, slept


def test_transient_errors_are_retried_with_doubling_backoff() -> None:
    flaky = Flaky(BackendUnavailable("reset", retry_after_s=0), DeadlineExceeded("slow"),
                  BackendUnavailable("refused", retry_after_s=0))
    result, slept = _run(flaky, RetryPolicy(attempts=5, base_s=0.5, cap_s=100))
    assert (result, flaky.calls) == ("scored", 4)
    assert slept == [0.5, 1.0, 2.0]


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=5.0)
    assert policy.backoff_s(10, 1.0) == 5.0
    assert policy.backoff_s(10, 0.3) == pytest.approx(1.5)
    assert policy.backoff_s(0, 0.0) == 0.0


def test_retry_after_is_honoured_but_bounded() -> None:
    _, slept = _run(Flaky(Overloaded("queue full", retry_after_s=7)), RetryPolicy(base_s=0.1), rand=0.5)
    assert slept == [7]
    _, slept = _run(Flaky(Overloaded("queue full", retry_after_s=3600)),
                    RetryPolicy(base_s=0.1, max_retry_after_s=60), rand=0.5)
    assert slept == [60]


@pytest.mark.parametrize("error", [InvalidImage("truncated"), ModelNotFound("no such model"),
                                   BackendError("model failed on this input")])
def test_an_images_own_fault_is_not_retried(error: Exception) -> None:
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        _run(flaky, RetryPolicy())
    assert flaky.calls == 1
    assert not is_transient(error)


def test_giving_up_raises_retries_exhausted_with_the_last_error() -> None:
    flaky = Flaky(*[BackendUnavailable("down", retry_after_s=0)] * 10)
    with pytest.raises(RetriesExhausted, match="after 3 tries") as info:
        _run(flaky, RetryPolicy(attempts=3))
    assert flaky.calls == 3
    assert isinstance(info.value.last, BackendUnavailable)
