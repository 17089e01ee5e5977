"""The embedded runtime's batcher: coalesces concurrent requests, refuses past its queue, keeps deadlines.

The batch runner here is a plain numpy function (doubling its input), so batching behaviour is
observed exactly; the real model runs through the same class in tests/backends/test_onnxruntime.py.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from visiongate.service.backends.batcher import Batcher
from visiongate.service.errors import DeadlineExceeded, Overloaded


def doubling(sizes: list[int], gate: threading.Event | None = None, started: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if started is not None:
            started.set()
        if gate is not None:
            gate.wait(5)
        sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}

    return run


async def taken(started: threading.Event) -> None:
    """Wait, off the event loop, until the worker has taken the first batch into the model."""
    assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)


async def test_concurrent_requests_are_batched_and_each_gets_its_own_rows() -> None:
    sizes: list[int] = []
    gate = threading.Event()
    batcher = Batcher("m", doubling(sizes, gate), workers=1, max_batch=8, delay_s=0.05, max_queue=64)
    try:
        calls = [batcher.submit({"x": np.full((1, 3), i, np.float32)}, timeout_s=5) for i in range(9)]
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0.1)
        gate.set()
        results = await asyncio.gather(*tasks)
    finally:
        batcher.close()
    assert [float(r["y"][0, 0]) for r in results] == [2.0 * i for i in range(9)]
    assert sum(sizes) == 9 and max(sizes) <= 8 and len(sizes) <= 3


async def test_different_shapes_never_share_a_batch() -> None:
    sizes: list[int] = []
    batcher = Batcher("m", doubling(sizes), workers=1, max_batch=8, delay_s=0.02, max_queue=64)
    try:
        a, b = await asyncio.gather(batcher.submit({"x": np.ones((1, 3), np.float32)}, 5),
                                    batcher.submit({"x": np.ones((1, 5), np.float32)}, 5))
    finally:
        batcher.close()
    assert a["y"].shape == (1, 3) and b["y"].shape == (1, 5)


async def test_full_queue_answers_overloaded_at_once_with_a_retry_hint() -> None:
    gate, started = threading.Event(), threading.Event()
    batcher = Batcher("m", doubling([], gate, started), workers=1, max_batch=1, delay_s=0, max_queue=2)
    try:
        first = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1))}, 5))
        await taken(started)  # the worker holds it, inside the model
        queued = [asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1))}, 5)) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit({"x": np.ones((1, 1))}, 5)
        assert not first.done()  # refused at once: nothing had to finish first
        assert refused.value.retry_after_s >= 1
        gate.set()
        await asyncio.gather(first, *queued)
    finally:
        batcher.close()


async def test_a_request_past_its_deadline_gets_504_and_its_work_is_dropped() -> None:
    sizes: list[int] = []
    gate = threading.Event()
    started = threading.Event()
    batcher = Batcher("m", doubling(sizes, gate, started), workers=1, max_batch=1, delay_s=0, max_queue=8)
    try:
        blocker = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1))}, 5))
        await taken(started)  # the worker holds it, inside the model
        with pytest.raises(DeadlineExceeded):
            await batcher.submit({"x": np.ones((1, 1))}, timeout_s=0.05)
        gate.set()
        await blocker
        await asyncio.sleep(0.05)
    finally:
        batcher.close()
    assert sizes == [1]  # only the blocker reached the model


async def test_inputs_prepared_on_the_worker_batch_together_and_a_bad_one_fails_alone() -> None:
    sizes: list[int] = []
    gate, started = threading.Event(), threading.Event()
    batcher = Batcher("m", doubling(sizes, gate, started), workers=1, max_batch=8, delay_s=0.05, max_queue=64)
    threads: set[str] = set()

    def good(i: int):  # type: ignore[no-untyped-def]
        def make() -> dict[str, np.ndarray]:
            threads.add(threading.current_thread().name)
            return {"x": np.full((1, 3), i, np.float32)}
        return make

    def bad() -> dict[str, np.ndarray]:
        raise ValueError("not an image")

    try:
        blocker = asyncio.ensure_future(batcher.submit({"x": np.zeros((1, 3), np.float32)}, 5))
        await taken(started)  # the blocker's batch is closed: the next ones queue up and batch together
        calls = [batcher.submit_prepare(good(i), ((3,),), 5) for i in (1, 2)] + \
                [batcher.submit_prepare(bad, ((3,),), 5)]
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        one, two, failed = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        batcher.close()
    assert float(one["y"][0, 0]) == 2.0 and float(two["y"][0, 0]) == 4.0  # type: ignore[index]
    assert isinstance(failed, ValueError)
    assert sizes == [1, 2]  # the bad image never reached the model
    assert threads == {"infer-m-0"}  # prepared on the inference thread itself
