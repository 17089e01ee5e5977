"""The pipelined scoring loop: work list -> concurrent ``score_path`` -> committed chunks.

Pipelining: up to ``in_flight`` images are between "read" and "recorded" at once. Their decode and
preprocess run on the service's thread pool while earlier images sit in the backend's batcher,
which coalesces concurrent requests into batches of the model's ``max_batch_size`` and runs
several of them on its inference threads: decoding overlaps inference with no stage waiting on
another's whole batch.

Exactly-once: records collect in memory and are committed as one atomic chunk every
``chunk_size`` records or ``chunk_seconds``; a path is in the buffer at most once, the resume
skips every path in a committed chunk, and a kill loses only the uncommitted buffer, which the
next run scores again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .engines import Engine
from .ledger import LedgerError, ShardLock, read_ledger
from .progress import Mode, Progress, Summary
from .records import Record
from .retry import RetriesExhausted, RetryPolicy
from .scoring import ScoreContext, score_path
from .shard import Shard
from .sources import Skipped, display_path, list_images
from .writers import ChunkWriter, Format, OutputWriteError, atomic_write

logger = logging.getLogger("visiongate.batch")

IMAGES_DIRNAME = "images"


@dataclass
class RunConfig:
    source: Path
    dest: Path
    job: dict[str, object]  # what is being computed (task, model...); a resumed run must match it
    shard: Shard = field(default_factory=lambda: Shard(0, 1))
    fmt: Format = "jsonl"
    chunk_size: int = 256  # records per committed chunk
    chunk_seconds: float = 10.0  # commit at least this often while images finish
    in_flight: int = 32  # images between read and recorded
    max_file_bytes: int = 20 * 1024 * 1024
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    progress: Mode = "auto"
    log_every_s: float = 10.0
    io_threads: int = 4
    writes_images: bool = False  # super-resolution


@dataclass
class Plan:
    """The work of this run: what this shard owns and has not committed yet."""

    todo: list[str]
    summary: Summary
    next_seq: int
    skipped: list[Skipped] = field(default_factory=list)  # not scorable, not yet recorded


def check_job(dest: Path, job: dict[str, object]) -> None:
    """Refuse to resume into a DEST written for another task/model; record the job on first use."""
    path = dest / "_job.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != job:
            raise LedgerError(f"{dest} holds results of another job ({old}); this run is {job}: "
                              "use another --out")
        return
    data = json.dumps(job, indent=2, sort_keys=True).encode()
    atomic_write(path, lambda fh: fh.write(data))


def plan(cfg: RunConfig) -> Plan:
    """List SOURCE, keep this shard's paths, drop those already committed (call under the lock)."""
    paths, ignored, skipped = list_images(cfg.source)
    mine = [p for p in paths if cfg.shard.owns(p)]
    ledger = read_ledger(cfg.dest)
    if ledger.duplicates:
        logger.warning("%d paths appear in more than one committed chunk (e.g. %s)",
                       len(ledger.duplicates), next(iter(ledger.duplicates)))
    todo = [p for p in mine if display_path(p) not in ledger.done]
    unrecorded = [s for s in skipped if cfg.shard.owns(s.rel) and display_path(s.rel) not in ledger.done]
    summary = Summary(listed=len(paths), ignored=ignored, in_shard=len(mine),
                      skipped_done=len(mine) - len(todo), unscorable=len(unrecorded))
    return Plan(todo, summary, ledger.next_seq.get(cfg.shard.label, 0), unrecorded)


def record_skipped(cfg: RunConfig, work: Plan) -> None:
    """Commit one error record per entry that cannot be scored (before any scoring)."""
    if not work.skipped:
        return
    for entry in work.skipped:
        logger.warning("not scorable: %s: %s", display_path(entry.rel), entry.message)
    records = [Record.failed(display_path(s.rel), s.error_type, s.message) for s in work.skipped]
    ChunkWriter(cfg.dest, cfg.shard, cfg.fmt, work.next_seq).commit(records)
    work.next_seq += 1
    work.summary.failed += len(records)
    work.summary.chunks += 1


async def score_all(cfg: RunConfig, engine: Engine, todo: list[str], writer: ChunkWriter,
                    summary: Summary, stop: asyncio.Event) -> None:
    """Score ``todo`` through ``engine``, committing chunks; returns when done or stopped."""
    io = ThreadPoolExecutor(cfg.io_threads, thread_name_prefix="batch-io")
    ctx = ScoreContext(cfg.source, engine, io, cfg.max_file_bytes, cfg.policy,
                       images_dir=cfg.dest / IMAGES_DIRNAME if cfg.writes_images else None, dest=cfg.dest)
    progress = Progress(len(todo), cfg.progress, log_every_s=cfg.log_every_s)
    buffer: list[Record] = []
    sem = asyncio.Semaphore(cfg.in_flight)
    tasks: set[asyncio.Task[None]] = set()

    write_error: OutputWriteError | None = None

    def cannot_write(exc: OutputWriteError) -> None:
        nonlocal write_error
        if write_error is None:
            write_error = exc
            summary.stopped = f"{exc}; fix that and re-run the same command to resume"
        stop.set()

    def commit() -> None:
        if buffer and write_error is None:
            try:
                writer.commit(sorted(buffer, key=lambda r: r.path))
            except OutputWriteError as exc:
                cannot_write(exc)  # the buffer is not committed: a re-run scores those images again
            buffer.clear()

    async def one(rel: str) -> None:
        try:
            record = await score_path(ctx, rel)
        except RetriesExhausted as exc:
            if summary.stopped is None:
                summary.stopped = f"remote failure: {exc}; re-run the same command to resume"
            stop.set()
            return
        except OutputWriteError as exc:
            cannot_write(exc)
            return
        finally:
            sem.release()
        buffer.append(record)
        if record.status == "ok":
            summary.scored += 1
        else:
            summary.failed += 1
        progress.update(record.status == "ok")
        if len(buffer) >= cfg.chunk_size:
            commit()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(cfg.chunk_seconds)
            commit()

    tick = asyncio.create_task(ticker())
    try:
        for rel in todo:
            await sem.acquire()
            if stop.is_set():
                sem.release()
                break
            task = asyncio.create_task(one(rel))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        tick.cancel()
        commit()
        progress.close()
        io.shutdown(wait=True)
        summary.chunks += writer.committed_files
    if write_error is not None:
        raise write_error


def _install_stop_handlers(stop: asyncio.Event, summary: Summary) -> list[signal.Signals]:
    """SIGTERM (a pod being evicted) / SIGINT: finish the images in flight, commit, exit."""
    loop = asyncio.get_running_loop()
    installed = []

    def on_signal(sig: signal.Signals) -> None:
        summary.stopped = summary.stopped or f"{sig.name}: in-flight images committed; re-run to resume"
        stop.set()
        loop.remove_signal_handler(sig)  # a second signal acts as usual

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    return installed


@contextlib.contextmanager
def shard_work(cfg: RunConfig, engine_name: str = "") -> Iterator[Plan]:
    """Hold this shard's lock, check DEST belongs to this job, and plan what is left to score."""
    cfg.dest.mkdir(parents=True, exist_ok=True)
    with ShardLock(cfg.dest, cfg.shard):
        check_job(cfg.dest, cfg.job)
        work = plan(cfg)
        summary = work.summary
        logger.info("shard %s%s: %d images, %d already done, %d to score, %d not scorable", cfg.shard,
                    engine_name, summary.in_shard, summary.skipped_done, len(work.todo), len(work.skipped))
        record_skipped(cfg, work)
        yield work


async def run_async(cfg: RunConfig, engine: Engine) -> Summary:
    started = time.monotonic()
    with shard_work(cfg) as work:
        summary = work.summary
        if work.todo:
            writer = ChunkWriter(cfg.dest, cfg.shard, cfg.fmt, work.next_seq)
            stop = asyncio.Event()
            installed = _install_stop_handlers(stop, summary)
            await engine.start()
            try:
                scoring_started = time.monotonic()
                await score_all(cfg, engine, work.todo, writer, summary, stop)
                summary.scoring_s = time.monotonic() - scoring_started
            finally:
                for sig in installed:
                    asyncio.get_running_loop().remove_signal_handler(sig)
                await engine.close()
    summary.elapsed_s = time.monotonic() - started
    return summary
