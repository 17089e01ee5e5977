"""Dynamic batching for an in-process runner: coalesce concurrent requests, run them on threads.

Requests wait in one bounded queue per model. Each of ``workers`` threads takes the oldest request,
adds compatible ones (same per-item shape) up to ``max_batch`` items, waiting at most ``delay_s``
for more (Triton's ``max_queue_delay_microseconds``), and runs the batch. Results go back to the
event loop with ``call_soon_threadsafe``, so no executor hop per request.

Admission control: a request is refused at once (503 ``Overloaded`` with a Retry-After) when the
queue holds ``max_queue`` requests, or when the work already queued would take longer than
``max_wait_s`` (less what the request has already waited before reaching the model, or more
than its own deadline allows) at the recent pace. Refusing early keeps the
latency of admitted requests bounded under overload instead of letting every request time out.

A request whose future is done before it runs (deadline passed: 504, or the caller cancelled) is
dropped before it reaches the model.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DeadlineExceeded, Overloaded, ServiceUnavailable
from .base import Duration, ModelStats

RunBatch = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
#: makes one item's inputs (batch axis of 1) on the worker thread, e.g. decode + resize an image
Prepare = Callable[[], dict[str, np.ndarray]]


@dataclass(eq=False)
class _Pending:
    inputs: dict[str, np.ndarray] | None  # None until ``prepare`` has run on a worker thread
    n: int
    shape_key: tuple[tuple[int, ...], ...]
    future: asyncio.Future[dict[str, np.ndarray]]
    loop: asyncio.AbstractEventLoop
    deadline: float  # time.monotonic()
    enqueued: float = field(default_factory=time.monotonic)
    prepare: Prepare | None = None
    taken: bool = False  # moved from the queue into a batch (under the lock)


class Reservation:
    """Items one request was admitted for on one ``Batcher``, not yet submitted."""

    __slots__ = ("_batcher", "expires", "remaining")

    def __init__(self, batcher: Batcher, items: int, expires: float) -> None:
        self._batcher = batcher
        self.remaining = items
        self.expires = expires

    def release(self) -> None:
        """Give back what was not submitted (the request failed before reaching the model)."""
        if self.remaining:
            self._batcher._release(self)


class BatchStats:
    """Counters behind the statistics extension, written by the worker threads.

    Plain integer additions under the GIL: a reader may see one batch half-counted, never a
    corrupt number. Durations are nanoseconds."""

    def __init__(self) -> None:
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success_count = 0
        self.success_ns = 0
        self.fail_count = 0
        self.fail_ns = 0
        self.queue_ns = 0
        self.input_ns = 0
        self.infer_ns = 0
        #: batch size -> [executions, input ns, infer ns]
        self.by_size: dict[int, list[int]] = {}

    def record_batch(self, items: int, requests: int, queued_s: float, input_s: float, infer_s: float) -> None:
        self.last_inference_ms = int(time.time() * 1000)
        self.inference_count += items
        self.execution_count += 1
        self.success_count += requests
        self.success_ns += int((queued_s + requests * (input_s + infer_s)) * 1e9)
        self.queue_ns += int(queued_s * 1e9)
        self.input_ns += int(requests * input_s * 1e9)
        self.infer_ns += int(requests * infer_s * 1e9)
        row = self.by_size.setdefault(items, [0, 0, 0])
        row[0] += 1
        row[1] += int(input_s * 1e9)
        row[2] += int(infer_s * 1e9)

    def record_failure(self, requests: int, seconds: float) -> None:
        self.fail_count += requests
        self.fail_ns += int(requests * seconds * 1e9)


def _resolve(fut: asyncio.Future[dict[str, np.ndarray]], result: dict[str, np.ndarray] | None,
             error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        assert result is not None
        fut.set_result(result)


def _expire(fut: asyncio.Future[dict[str, np.ndarray]], timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(DeadlineExceeded(f"no result within {timeout_s:g} s"))


class Batcher:
    def __init__(self, name: str, run: RunBatch, *, workers: int, max_batch: int, delay_s: float,
                 max_queue: int, max_wait_s: float = float("inf"),
                 on_batch: Callable[[int], None] | None = None, run_alone: RunBatch | None = None,
                 nice: int = 0, waited: Callable[[], float] = lambda: 0.0) -> None:
        self.name = name
        self._run = run
        # used when a batch is the only work in flight: e.g. a session with more intra-op threads,
        # which halves single-request latency on an idle CPU without oversubscribing a busy one
        self._run_alone = run_alone
        self._nice = nice
        self._max_batch = max(1, max_batch)
        self._delay_s = max(0.0, delay_s)
        self._max_queue = max_queue
        self._max_wait_s = max_wait_s
        # how long the request being admitted has already waited (reading its body, or behind a
        # busy event loop in a flood): that time counts against max_wait_s too
        self._waited = waited
        self._on_batch = on_batch
        self.stats = BatchStats()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_items = 0  # sum of n over the queue
        # admitted by reserve() but not yet submitted (still being decoded), oldest first. A request
        # that dies without releasing its reservation leaves it to expire after _reserve_s.
        self._reserved: list[Reservation] = []
        self._reserve_s = min(max_wait_s, 10.0)
        self._cond = threading.Condition()
        self._closed = False
        self._in_flight = 0
        # seconds of one worker's time per item, seeded small and refined by every batch; read
        # without the lock (a float assignment is atomic in CPython)
        self._item_s = 0.01
        self._workers = [threading.Thread(target=self._work, name=f"infer-{name}-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._workers:
            t.start()

    @property
    def depth(self) -> int:
        return len(self._queue) + self._in_flight

    def expected_wait_s(self, extra_items: int = 0) -> float:
        """Seconds until work queued now (plus ``extra_items``) is done, at the recent pace."""
        items = self._queued_items + self._in_flight + self._reserved_items() + extra_items
        return items * self._item_s / len(self._workers)

    def retry_after_s(self) -> float:
        """How long the current queue takes to drain at the recent pace (at least 1 s)."""
        return max(1.0, self.expected_wait_s())

    def _reserved_items(self) -> int:
        now = time.monotonic()
        if self._reserved and self._reserved[0].expires < now:
            self._reserved = [r for r in self._reserved if r.expires >= now]
        return sum(r.remaining for r in self._reserved)

    def reserve(self, n: int, timeout_s: float) -> Reservation:
        """Admit ``n`` items at once, all or none (503 ``Overloaded`` otherwise). Until they are
        submitted under the reservation they count as queued, so requests still decoding are part
        of the estimate; a reservation not released expires after a few seconds."""
        with self._cond:
            self._admit(n, timeout_s)
            reservation = Reservation(self, n, time.monotonic() + self._reserve_s)
            self._reserved.append(reservation)
            return reservation

    def would_refuse(self, n: int, timeout_s: float) -> Overloaded | None:
        """The ``Overloaded`` that admitting ``n`` more items now would raise, else None; reserves
        nothing (an early look before a request's body is read)."""
        with self._cond:
            try:
                self._admit(n, timeout_s)
            except Overloaded as exc:
                return exc
            except (DeadlineExceeded, ServiceUnavailable):
                return None  # left to the normal path, which answers these itself
        return None

    def _release(self, reservation: Reservation) -> None:
        """Drop what is left of ``reservation``: the request will not submit it."""
        with self._cond:
            self._consume(reservation, reservation.remaining)
            self._cond.notify_all()

    def _consume(self, reservation: Reservation, n: int) -> None:
        """Take ``n`` items out of ``reservation`` (under the lock); an emptied one stops counting."""
        reservation.remaining = max(0, reservation.remaining - n)
        if reservation.remaining == 0:
            with contextlib.suppress(ValueError):
                self._reserved.remove(reservation)

    def _admit(self, n: int, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise DeadlineExceeded("the request's deadline passed before it reached the model")
        if self._closed:
            raise ServiceUnavailable(f"model {self.name!r} is shutting down", retry_after_s=5)
        queued = len(self._queue)
        if queued >= self._max_queue:
            raise Overloaded(f"model {self.name!r} has {queued} requests waiting; retry later",
                             retry_after_s=self.retry_after_s())
        # only refuse on the time estimate when something is queued: an idle model always tries
        wait, limit = self.expected_wait_s(n), min(self._max_wait_s - self._waited(), timeout_s)
        if (queued or self._reserved_items()) and wait > limit:
            raise Overloaded(f"model {self.name!r} is busy: about {wait:.2f} s of work is queued, more than "
                             f"this request's {limit:g} s; retry later", retry_after_s=self.retry_after_s())

    async def submit(self, inputs: dict[str, np.ndarray], timeout_s: float,
                     reservation: Reservation | None = None, items: int | None = None) -> dict[str, np.ndarray]:
        """Run ``inputs`` (batch axis first) in a batch, as part of what ``reservation`` admitted
        (without one, admitted here on its own: 503 at once when it cannot be served in time); 504
        once ``timeout_s`` has passed. ``items``: for a model without a batch axis, 1."""
        n = items if items is not None else int(next(iter(inputs.values())).shape[0])
        return await self._enqueue(inputs, None, n, tuple(a.shape[1:] for a in inputs.values()),
                                   timeout_s, reservation)

    async def submit_prepare(self, prepare: Prepare, shape_key: tuple[tuple[int, ...], ...],
                             timeout_s: float, reservation: Reservation | None = None) -> dict[str, np.ndarray]:
        """Like ``submit`` for one item whose inputs ``prepare`` makes on the worker thread, just
        before its batch runs: decoding then happens on the threads that run the model, one
        sequence per core as in the in-process ceiling, instead of on a second pool competing with
        them. ``shape_key``: each input's shape without the batch axis (known from the model)."""
        return await self._enqueue(None, prepare, 1, shape_key, timeout_s, reservation)

    async def _enqueue(self, inputs: dict[str, np.ndarray] | None, prepare: Prepare | None, n: int,
                       shape_key: tuple[tuple[int, ...], ...], timeout_s: float,
                       reservation: Reservation | None) -> dict[str, np.ndarray]:
        if timeout_s <= 0:
            raise DeadlineExceeded("the request's deadline passed before it reached the model")
        loop = asyncio.get_running_loop()
        item = _Pending(
            inputs=inputs, n=n, shape_key=shape_key, prepare=prepare,
            future=loop.create_future(), loop=loop, deadline=time.monotonic() + timeout_s,
        )
        with self._cond:
            if self._closed and not self._workers_alive():
                raise ServiceUnavailable(f"model {self.name!r} is shutting down", retry_after_s=5)
            if reservation is None:
                self._admit(n, timeout_s)
            else:
                self._consume(reservation, n)
            self._queue.append(item)
            self._queued_items += n
            self._cond.notify()
        # answered early (504 by its timer, or the caller went away): out of the queue at once, so
        # no worker runs it and admission stops counting it (it would refuse others for dead work)
        item.future.add_done_callback(lambda _: self._drop_if_queued(item))
        timer = loop.call_later(timeout_s, _expire, item.future, timeout_s)
        try:
            # a cancelled caller cancels the future too, so the worker drops the work
            return await item.future
        finally:
            timer.cancel()

    def _drop_if_queued(self, item: _Pending) -> None:
        with self._cond:
            if item.taken:  # the common case: it ran (or runs) in a batch
                return
            # by identity (deque.remove would compare, and format the item's repr when absent: ~15%
            # of the CPU at load)
            for i, queued in enumerate(self._queue):
                if queued is item:
                    del self._queue[i]
                    self._queued_items -= item.n
                    return

    def _workers_alive(self) -> bool:
        return any(t.is_alive() for t in self._workers)

    def _gather(self, first: _Pending, batch: list[_Pending], n: int) -> int:
        """Move queued requests that fit ``first``'s shape into ``batch`` (under the lock); new size."""
        kept: collections.deque[_Pending] = collections.deque()
        while self._queue:
            item = self._queue.popleft()
            if n < self._max_batch and item.shape_key == first.shape_key and n + item.n <= self._max_batch:
                item.taken = True
                batch.append(item)
                n += item.n
            else:
                kept.append(item)
        self._queue = kept
        return n

    def _take_batch(self) -> tuple[list[_Pending], bool] | None:
        """The next batch, and whether it is the only work in flight."""
        with self._cond:
            while not self._queue:
                # once closed, stay until admitted requests still decoding have submitted
                if self._closed and self._reserved_items() == 0:
                    return None
                self._cond.wait(0.1 if self._closed else None)
            first = self._queue.popleft()
            first.taken = True
            batch, n = [first], first.n
            wait_until = time.monotonic() + self._delay_s
            while n < self._max_batch:
                if self._queue:
                    n = self._gather(first, batch, n)
                remaining = wait_until - time.monotonic()
                if n >= self._max_batch or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            self._queued_items -= n
            self._in_flight += n
            return batch, self._in_flight == n and not self._queue

    def _work(self) -> None:
        if self._nice:
            # Under overload the event loop must win the CPU to refuse requests quickly (503 in
            # milliseconds, not seconds): the model threads yield to it. Linux: per-thread nice.
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        while (taken := self._take_batch()) is not None:
            batch, alone = taken
            n = sum(item.n for item in batch)
            try:
                self._run_batch(batch, alone)
            finally:
                with self._cond:
                    self._in_flight -= n
                    self._cond.notify_all()

    def _run_batch(self, batch: list[_Pending], alone: bool = False) -> None:
        # the pace estimate covers everything a worker does per item, decoding included: timing
        # only the model run made the queue look ~20% shorter than it was, so admitted requests
        # waited past max_wait_s under overload
        now = started = time.monotonic()
        live = []
        stats = self.stats
        for item in batch:
            if item.future.done():  # cancelled by its caller, or already answered 504 by its timer
                continue
            if now > item.deadline:
                item.loop.call_soon_threadsafe(_resolve, item.future, None,
                                               DeadlineExceeded("deadline passed while queued"))
                continue
            if item.prepare is not None:
                try:
                    item.inputs = item.prepare()
                except BaseException as exc:
                    item.loop.call_soon_threadsafe(_resolve, item.future, None, exc)
                    continue
            live.append(item)
        if not live:
            return
        prepared = time.monotonic()
        first = live[0].inputs
        assert first is not None
        stacked = first if len(live) == 1 else {
            k: np.concatenate([it.inputs[k] for it in live]) for k in first}  # type: ignore[index]
        n = sum(it.n for it in live)
        ran = time.monotonic()
        try:
            outputs = (self._run_alone if alone and self._run_alone is not None else self._run)(stacked)
        except BaseException as exc:
            for item in live:
                item.loop.call_soon_threadsafe(_resolve, item.future, None, exc)
            stats.record_failure(len(live), time.monotonic() - started)
            return
        done = time.monotonic()
        self._item_s = 0.8 * self._item_s + 0.2 * (done - started) / n
        stats.record_batch(n, len(live), sum(started - it.enqueued for it in live),
                           prepared - started + (ran - prepared), done - ran)
        if self._on_batch is not None:
            self._on_batch(n)
        offset = 0
        for item in live:
            part = outputs if len(live) == 1 else {k: v[offset:offset + item.n] for k, v in outputs.items()}
            offset += item.n
            item.loop.call_soon_threadsafe(_resolve, item.future, part, None)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking work; queued requests still run; wait for the workers to finish."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))


def model_stats(model: str, version: int, stats: BatchStats) -> ModelStats:
    """The statistics extension's view of one batcher's counters."""
    by_size = {size: (Duration(runs, input_ns), Duration(runs, infer_ns), Duration(runs, 0))
               for size, (runs, input_ns, infer_ns) in sorted(stats.by_size.items())}
    return ModelStats(
        name=model, version=version, last_inference_ms=stats.last_inference_ms,
        inference_count=stats.inference_count, execution_count=stats.execution_count,
        success=Duration(stats.success_count, stats.success_ns), fail=Duration(stats.fail_count, stats.fail_ns),
        queue=Duration(stats.success_count, stats.queue_ns),
        compute_input=Duration(stats.success_count, stats.input_ns),
        compute_infer=Duration(stats.success_count, stats.infer_ns),
        compute_output=Duration(stats.success_count, 0), batches=by_size)
