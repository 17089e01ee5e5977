"""Resuming: what counts as done, and the lock that keeps two runs off one shard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visiongate.service.batch.ledger import LedgerError, ShardLock, read_ledger
from visiongate.service.batch.records import Record
from visiongate.service.batch.shard import Shard
from visiongate.service.batch.writers import ChunkWriter, parquet_available


def _ok(path: str) -> Record:
    return Record.ok(path, {"model": "m"})


def test_an_empty_or_missing_dest_has_nothing_done(tmp_path: Path) -> None:
    assert read_ledger(tmp_path / "nope").done == set()
    assert read_ledger(tmp_path).chunks == 0


def test_done_is_the_union_of_committed_chunks_of_every_shard(tmp_path: Path) -> None:
    ChunkWriter(tmp_path, Shard(0, 2), "jsonl", 0).commit([_ok("a.jpg"), _ok("b.jpg")])
    ChunkWriter(tmp_path, Shard(0, 2), "jsonl", 1).commit([_ok("c.jpg")])
    ChunkWriter(tmp_path, Shard(1, 2), "jsonl", 0).commit([Record.failed("d.jpg", "InvalidImage", "x")])
    ledger = read_ledger(tmp_path)
    assert ledger.done == {"a.jpg", "b.jpg", "c.jpg", "d.jpg"}  # an error record is done too
    assert ledger.chunks == 3
    assert ledger.next_seq == {"00000of00002": 2, "00001of00002": 1}
    assert ledger.duplicates == {}


@pytest.mark.skipif(not parquet_available(), reason="pyarrow is not installed")
def test_a_resume_may_switch_format(tmp_path: Path) -> None:
    ChunkWriter(tmp_path, Shard(0, 1), "parquet", 0).commit([_ok("a.jpg")])
    ChunkWriter(tmp_path, Shard(0, 1), "jsonl", 1).commit([_ok("b.jpg")])
    assert read_ledger(tmp_path).done == {"a.jpg", "b.jpg"}


def test_temp_files_of_a_killed_run_do_not_count(tmp_path: Path) -> None:
    (tmp_path / ".part-00000of00001-000003.jsonl.123.tmp").write_text(json.dumps(
        {"path": "half.jpg", "status": "ok", "result": {}}) + "\n")
    (tmp_path / "part-notes.txt").write_text("someone else's file")
    assert read_ledger(tmp_path).done == set()


def test_duplicates_are_reported(tmp_path: Path) -> None:
    ChunkWriter(tmp_path, Shard(0, 1), "jsonl", 0).commit([_ok("a.jpg")])
    ChunkWriter(tmp_path, Shard(0, 1), "jsonl", 1).commit([_ok("a.jpg")])
    assert read_ledger(tmp_path).duplicates == {"a.jpg": 2}


def test_a_damaged_chunk_stops_the_resume_with_advice(tmp_path: Path) -> None:
    (tmp_path / "part-00000of00001-000000.jsonl").write_text('{"path": "a.jpg", "stat')
    with pytest.raises(LedgerError, match="move it away"):
        read_ledger(tmp_path)


def test_the_shard_lock_refuses_a_second_run_and_frees_on_exit(tmp_path: Path) -> None:
    shard = Shard(1, 3)
    with ShardLock(tmp_path, shard):
        with pytest.raises(LedgerError, match="another process"):
            ShardLock(tmp_path, shard).__enter__()
        with ShardLock(tmp_path, Shard(2, 3)):  # other shards run side by side
            pass
    with ShardLock(tmp_path, shard):
        pass


def test_taking_the_lock_clears_only_this_shards_stale_temps(tmp_path: Path) -> None:
    mine = tmp_path / ".part-00001of00003-000004.jsonl.99.tmp"
    theirs = tmp_path / ".part-00002of00003-000004.jsonl.98.tmp"
    mine.write_text("half")
    theirs.write_text("half, being written right now")
    with ShardLock(tmp_path, Shard(1, 3)):
        assert not mine.exists()
        assert theirs.exists()
