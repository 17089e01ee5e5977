"""``--engine ray``: the same scoring as a Ray Data job, for folders too big for one machine.

Each Ray actor builds the in-process engine once (onnxruntime + ``InferenceService``) and scores
batches of paths with ``score_path``, the function the local runner uses, so records are
identical. The driver lists SOURCE, applies the shard and the ledger exactly as the local runner
does, and commits the records it gets back through the same ``ChunkWriter``: only the driver
writes chunks, so exactly-once holds the same way. SOURCE (and DEST, for super-resolution images)
must be visible at the same path on every Ray node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..settings import Settings
from .engines import local_engine
from .progress import Progress, Summary
from .records import PARQUET_COLUMNS, Record
from .retry import RetriesExhausted, RetryPolicy
from .runner import IMAGES_DIRNAME, RunConfig, shard_work
from .scoring import ScoreContext, score_path
from .tasks import TaskOptions
from .writers import ChunkWriter

logger = logging.getLogger("visiongate.batch")

#: status of a row the actor could not score for a transient reason: not committed, re-run scores it
_RETRY_LATER = "retry-later"


class RayScorer:
    """A Ray Data ``map_batches`` callable class: ``{"path": [...]}`` -> a table of records."""

    def __init__(self, settings: dict[str, Any], opts: TaskOptions, source: str, dest: str,
                 max_file_bytes: int, policy: RetryPolicy, writes_images: bool, in_flight: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = local_engine(Settings(**settings), opts)
        self.loop.run_until_complete(self.engine.start())
        self.io = ThreadPoolExecutor(2, thread_name_prefix="ray-io")
        self.ctx = ScoreContext(Path(source), self.engine, self.io, max_file_bytes, policy,
                                images_dir=Path(dest) / IMAGES_DIRNAME if writes_images else None,
                                dest=Path(dest))
        self.in_flight = in_flight

    async def _score(self, paths: list[str]) -> list[Record]:
        sem = asyncio.Semaphore(self.in_flight)

        async def one(rel: str) -> Record:
            async with sem:
                try:
                    return await score_path(self.ctx, rel)
                except RetriesExhausted as exc:
                    # a row the driver leaves uncommitted; not a Record status, hence the ignore
                    return Record(rel, _RETRY_LATER,  # type: ignore[arg-type]
                                  error_type=exc.last.type, error_message=str(exc))

        return list(await asyncio.gather(*(one(p) for p in paths)))

    def __call__(self, batch: dict[str, Any]) -> Any:
        import pyarrow as pa

        records = self.loop.run_until_complete(self._score([str(p) for p in batch["path"]]))
        rows = [r.to_row() for r in records]
        return pa.table({c: pa.array([row[c] for row in rows], type=pa.string()) for c in PARQUET_COLUMNS})


def run_ray(cfg: RunConfig, settings: Settings, opts: TaskOptions, address: str | None = None,
            workers: int = 2, batch_size: int = 16) -> Summary:
    """Score this shard's remaining paths on Ray; commit chunks on the driver."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError("--engine ray needs Ray Data: pip install 'visiongate[ray]'") from exc

    started = time.monotonic()
    with shard_work(cfg, " on Ray") as work:
        summary = work.summary
        if work.todo:
            own_cluster = not ray.is_initialized()
            if own_cluster:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            try:
                scoring_started = time.monotonic()
                _score_on_ray(cfg, settings, opts, work.todo, work.next_seq, summary, workers, batch_size)
                summary.scoring_s = time.monotonic() - scoring_started  # includes the actors' model load
            finally:
                if own_cluster:
                    ray.shutdown()
    summary.elapsed_s = time.monotonic() - started
    return summary


def _score_on_ray(cfg: RunConfig, settings: Settings, opts: TaskOptions, todo: list[str], next_seq: int,
                  summary: Summary, workers: int, batch_size: int) -> None:
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items([{"path": p} for p in todo])
    scored = ds.map_batches(
        RayScorer, batch_size=batch_size, batch_format="numpy", concurrency=workers, num_cpus=1,
        fn_constructor_kwargs={
            # absolute paths: actors may run in another working directory
            "settings": settings.model_dump(mode="json") | {"repository": str(settings.repository.resolve())},
            "opts": opts, "source": str(cfg.source.resolve()), "dest": str(cfg.dest.resolve()),
            "max_file_bytes": cfg.max_file_bytes, "policy": cfg.policy,
            "writes_images": cfg.writes_images, "in_flight": cfg.in_flight,
        },
    )
    writer = ChunkWriter(cfg.dest, cfg.shard, cfg.fmt, next_seq)
    progress = Progress(len(todo), cfg.progress, log_every_s=cfg.log_every_s)
    try:
        for table in scored.iter_batches(batch_size=cfg.chunk_size, batch_format="pyarrow"):
            assert not isinstance(table, dict)  # batch_format="pyarrow": a pyarrow Table, never numpy columns
            records = []
            for row in table.to_pylist():
                if row["status"] == _RETRY_LATER:
                    summary.stopped = summary.stopped or (f"remote failure: {row['error_message']}; "
                                                          "re-run the same command to resume")
                    continue
                record = Record.from_row(row)
                records.append(record)
                summary.scored += record.status == "ok"
                summary.failed += record.status == "error"
                progress.update(record.status == "ok")
            writer.commit(sorted(records, key=lambda r: r.path))
    finally:
        progress.close()
        summary.chunks += writer.committed_files
