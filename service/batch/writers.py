"""Atomic files: result chunks (JSON Lines or Parquet) and super-resolution output images.

Every file appears under its final name complete or not at all: it is written to a hidden temp
file in the same folder, flushed, fsynced, renamed over the final name (atomic on POSIX), and the
folder is fsynced so the rename itself survives a power cut. A reader (the ledger on resume, a
downstream job) therefore never sees half a chunk.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Literal

from .records import PARQUET_COLUMNS, Record
from .shard import Shard

Format = Literal["jsonl", "parquet"]
#: ``part-<shard>-<seq>.<ext>``; the ledger reads exactly these names
CHUNK_RE = re.compile(r"^part-(?P<shard>\d+of\d+)-(?P<seq>\d{6,})\.(?P<ext>jsonl|parquet)$")
TMP_SUFFIX = ".tmp"


def parquet_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputWriteError(Exception):
    """A result file could not be written (disk full, read-only, quota, file size limit, I/O error).
    Not an image's fault: the run stops, and a re-run resumes once the cause is fixed."""

    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(f"could not write {path}: {exc.strerror or exc}")
        self.path = path


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temp file + fsync + rename; a crash leaves only a ``.*.tmp`` file.

    Raises ``OutputWriteError`` when the file system refuses (the temp file is removed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputWriteError(path, exc) from exc
        raise


def encode_jsonl(records: Iterable[Record]) -> bytes:
    return b"".join(json.dumps(r.to_json(), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                    for r in records)


def encode_parquet(records: list[Record]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [r.to_row() for r in records]
    table = pa.table({c: pa.array([row[c] for row in rows], type=pa.string()) for c in PARQUET_COLUMNS})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


class ChunkWriter:
    """Commits lists of records as ``DEST/part-<shard>-<seq>.<ext>``, one atomic file each."""

    def __init__(self, dest: Path, shard: Shard, fmt: Format, next_seq: int) -> None:
        if fmt == "parquet" and not parquet_available():
            raise RuntimeError("--format parquet needs pyarrow: pip install 'visiongate[parquet]'")
        self.dest = dest
        self.shard = shard
        self.fmt = fmt
        self.seq = next_seq
        self.committed_files = 0

    def commit(self, records: list[Record]) -> Path | None:
        """Write one chunk; returns its path (None for an empty list)."""
        if not records:
            return None
        data = encode_jsonl(records) if self.fmt == "jsonl" else encode_parquet(records)
        path = self.dest / f"part-{self.shard.label}-{self.seq:06d}.{self.fmt}"
        atomic_write(path, lambda fh: fh.write(data))
        self.seq += 1
        self.committed_files += 1
        return path


def image_output_path(images_root: Path, rel: str) -> Path:
    """Where the SR output of ``SOURCE/rel`` goes: the same relative path, as PNG (lossless).

    The source extension is kept (``x.jpg`` -> ``x.jpg.png``) so that ``x.jpg`` and ``x.webp`` beside
    each other cannot overwrite each other's output; a ``.png`` source keeps its name.
    """
    path = Path(rel)
    return images_root / (path if path.suffix.lower() == ".png" else path.with_name(path.name + ".png"))


def save_output_image(images_root: Path, rel: str, png: bytes) -> Path:
    path = image_output_path(images_root, rel)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(path.parent, exc) from exc
    atomic_write(path, lambda fh: fh.write(png))
    return path
