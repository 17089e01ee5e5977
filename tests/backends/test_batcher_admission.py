"""Admission control of the embedded batcher: refuse at once what cannot be served in time.

The runner is a plain numpy function behind a gate, so the queue's state is exact; the real model
goes through the same class in tests/backends/test_onnxruntime.py.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from visiongate.service.backends.batcher import Batcher
from visiongate.service.errors import DeadlineExceeded, Overloaded


def gated(gate: threading.Event, seen: list[int], started: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if started is not None:
            started.set()
        gate.wait(5)
        seen.append(len(inputs["x"]))
        return {"y": inputs["x"] + 1}

    return run


async def taken(started: threading.Event) -> None:
    """Wait, off the event loop, until the worker has taken the first batch into the model."""
    assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)


def one() -> dict[str, np.ndarray]:
    return {"x": np.ones((1, 2), np.float32)}


async def test_queued_work_longer_than_max_wait_is_refused_at_once_with_its_drain_time() -> None:
    gate, seen = threading.Event(), []
    started = threading.Event()
    # each item is known to take 0.2 s of a worker; at most 0.5 s of queued work is accepted
    batcher = Batcher("m", gated(gate, seen, started), workers=1, max_batch=1, delay_s=0, max_queue=100, max_wait_s=0.5)
    batcher._item_s = 0.2
    try:
        running = asyncio.ensure_future(batcher.submit(one(), 5))
        await taken(started)  # the worker holds it, inside the model
        queued = asyncio.ensure_future(batcher.submit(one(), 5))  # 1 running + 1 queued = 0.4 s
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(one(), 5)  # would make it 0.6 s
        assert not running.done()  # refused at once: nothing had to finish first
        assert refused.value.retry_after_s >= 1
        gate.set()
        assert [float(r["y"][0, 0]) for r in await asyncio.gather(running, queued)] == [2.0, 2.0]
    finally:
        gate.set()
        batcher.close()


async def test_a_request_whose_own_deadline_is_shorter_than_the_queue_is_refused_not_timed_out() -> None:
    gate, seen = threading.Event(), []
    started = threading.Event()
    batcher = Batcher("m", gated(gate, seen, started), workers=1, max_batch=1, delay_s=0, max_queue=100)
    batcher._item_s = 0.2
    try:
        running = asyncio.ensure_future(batcher.submit(one(), 5))
        await taken(started)  # the worker holds it, inside the model
        queued = asyncio.ensure_future(batcher.submit(one(), 5))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.submit(one(), timeout_s=0.1)  # 0.6 s of work ahead, 0.1 s to live
        gate.set()
        await asyncio.gather(running, queued)
    finally:
        gate.set()
        batcher.close()
    assert seen == [1, 1]


async def test_an_idle_model_always_admits_even_a_slow_request() -> None:
    gate = threading.Event()
    batcher = Batcher("m", gated(gate, []), workers=1, max_batch=1, delay_s=0, max_queue=10, max_wait_s=0.001)
    batcher._item_s = 10.0
    try:
        task = asyncio.ensure_future(batcher.submit(one(), 5))
        await asyncio.sleep(0.02)
        gate.set()
        assert float((await task)["y"][0, 0]) == 2.0
    finally:
        gate.set()
        batcher.close()


async def test_a_cancelled_caller_s_work_never_reaches_the_model() -> None:
    gate, seen = threading.Event(), []
    started = threading.Event()
    batcher = Batcher("m", gated(gate, seen, started), workers=1, max_batch=1, delay_s=0, max_queue=10)
    try:
        running = asyncio.ensure_future(batcher.submit(one(), 5))
        await taken(started)  # the worker holds it, inside the model
        gone = asyncio.ensure_future(batcher.submit({"x": np.ones((3, 2), np.float32)}, 5))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        gate.set()
        await running
        await asyncio.sleep(0.05)
    finally:
        gate.set()
        batcher.close()
    assert seen == [1]  # the cancelled 3-row request was dropped


async def test_no_time_left_is_a_504_before_queueing() -> None:
    batcher = Batcher("m", gated(threading.Event(), []), workers=1, max_batch=1, delay_s=0, max_queue=10)
    try:
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(one(), timeout_s=0.0)
        assert batcher.depth == 0
    finally:
        batcher.close()


async def test_without_a_delay_a_worker_takes_what_is_queued_and_does_not_wait() -> None:
    gate, seen = threading.Event(), []
    started = threading.Event()
    batcher = Batcher("m", gated(gate, seen, started), workers=1, max_batch=8, delay_s=0, max_queue=64)
    try:
        first = asyncio.ensure_future(batcher.submit(one(), 5))
        await taken(started)  # the worker holds it, inside the model
        rest = [asyncio.ensure_future(batcher.submit(one(), 5)) for _ in range(3)]
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(first, *rest)
    finally:
        gate.set()
        batcher.close()
    assert seen == [1, 3]


async def test_time_a_request_already_waited_counts_against_max_wait() -> None:
    # 0.36 s of work (1 running, 1 queued, itself) fits a 0.5 s budget, unless the request already
    # spent 0.2 s reaching the model (its body read slowly, or a flooded event loop got to it late)
    gate, seen = threading.Event(), []
    started = threading.Event()
    waited = {"s": 0.0}
    batcher = Batcher("m", gated(gate, seen, started), workers=1, max_batch=1, delay_s=0, max_queue=100,
                      max_wait_s=0.5, waited=lambda: waited["s"])
    batcher._item_s = 0.12
    try:
        running = asyncio.ensure_future(batcher.submit(one(), 5))
        await taken(started)
        queued = asyncio.ensure_future(batcher.submit(one(), 5))
        await asyncio.sleep(0.01)
        batcher.reserve(1, 5).release()  # a fresh request is admitted
        waited["s"] = 0.2
        with pytest.raises(Overloaded):
            batcher.reserve(1, 5)  # one that waited 0.2 s already is not
        gate.set()
        await asyncio.gather(running, queued)
    finally:
        gate.set()
        batcher.close()


async def test_work_whose_request_timed_out_leaves_the_queue_and_stops_counting() -> None:
    """A 504 frees its place at once: the abandoned items neither run nor make admission refuse
    the requests behind them (a timed-out large super-resolve used to keep SR refused for seconds)."""
    gate, seen = threading.Event(), []
    started = threading.Event()
    batcher = Batcher("m", gated(gate, seen, started), workers=1, max_batch=1, delay_s=0, max_queue=10)
    try:
        running = asyncio.ensure_future(batcher.submit(one(), 5))
        await taken(started)
        abandoned = [asyncio.ensure_future(batcher.submit(one(), 0.05)) for _ in range(4)]
        await asyncio.sleep(0.01)
        assert batcher.depth == 5
        for call in abandoned:
            with pytest.raises(DeadlineExceeded):
                await call
        assert batcher.depth == 1  # only the one inside the model
        assert batcher.expected_wait_s() == pytest.approx(batcher.expected_wait_s(0))
        gate.set()
        await running
        await asyncio.sleep(0.05)
    finally:
        gate.set()
        batcher.close()
    assert seen == [1]  # none of the timed-out items reached the model
