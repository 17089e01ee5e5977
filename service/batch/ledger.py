"""What DEST already holds: the committed chunks, the paths they cover, and one lock per shard.

A path counts as done when a committed chunk (a ``part-*`` file under its final name) holds its
record; that is the only state there is, so resuming needs no separate journal that could disagree
with the data. Chunks of every shard and both formats are read, so a resumed run may change
``--format`` or the shard count and still skips everything done.

Temp files left by a killed run are hidden (``.part-*.tmp``) and ignored; this shard's are removed
when it takes its lock. Two processes must not run the same shard into the same DEST at once: the
lock (``fcntl.flock``, released by the kernel when the holder dies, even by SIGKILL) refuses the
second one.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .records import Record
from .shard import Shard
from .writers import CHUNK_RE, TMP_SUFFIX


class LedgerError(RuntimeError):
    """DEST cannot be resumed safely (locked by another run, or a chunk is unreadable)."""


@dataclass
class Ledger:
    done: set[str] = field(default_factory=set)
    chunks: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)  # path -> times seen, if ever > 1
    next_seq: dict[str, int] = field(default_factory=dict)  # shard label -> next free seq


def chunk_files(dest: Path) -> list[Path]:
    if not dest.is_dir():
        return []
    return sorted(p for p in dest.iterdir() if CHUNK_RE.match(p.name))


def read_chunk(path: Path) -> list[Record]:
    """Every record of one committed chunk."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            return [Record.from_json(json.loads(line)) for line in fh if line.strip()]
    import pyarrow.parquet as pq

    return [Record.from_row(row) for row in pq.read_table(path).to_pylist()]


def chunk_paths(path: Path) -> list[str]:
    """Only the ``path`` column of a chunk (cheap for Parquet)."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line)["path"] for line in fh if line.strip()]
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LedgerError(f"{path} is Parquet and pyarrow is not installed to read it") from None
    return [str(p) for p in pq.read_table(path, columns=["path"]).column("path").to_pylist()]


def read_ledger(dest: Path) -> Ledger:
    ledger = Ledger()
    seen: Counter[str] = Counter()
    for path in chunk_files(dest):
        match = CHUNK_RE.match(path.name)
        assert match is not None
        label, seq = match["shard"], int(match["seq"])
        ledger.next_seq[label] = max(ledger.next_seq.get(label, 0), seq + 1)
        try:
            seen.update(chunk_paths(path))
        except (OSError, ValueError, KeyError) as exc:
            raise LedgerError(f"committed chunk {path} cannot be read ({exc}); it was written "
                              "atomically, so something else changed it: move it away and re-run") from exc
        ledger.chunks += 1
    ledger.done = set(seen)
    ledger.duplicates = {p: n for p, n in seen.items() if n > 1}
    return ledger


class ShardLock:
    """Exclusive, non-blocking lock on ``DEST/.lock-<shard>``; also clears the shard's stale temps."""

    def __init__(self, dest: Path, shard: Shard) -> None:
        self.path = dest / f".lock-{shard.label}"
        self.shard = shard
        self._fh: IO[str] | None = None

    def __enter__(self) -> ShardLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise LedgerError(f"shard {self.shard} of {self.path.parent} is being scored by another "
                              "process; wait for it or use another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        for stale in self.path.parent.glob(f".part-{self.shard.label}-*{TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
