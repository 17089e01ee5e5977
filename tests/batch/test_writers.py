"""Chunks appear complete or not at all, in JSON Lines or Parquet, with the same records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import pytest

from support import encode, photo
from visiongate.service.batch.ledger import read_chunk
from visiongate.service.batch.records import Record
from visiongate.service.batch.shard import Shard
from visiongate.service.batch.writers import (
    ChunkWriter,
    atomic_write,
    image_output_path,
    parquet_available,
    save_output_image,
)

RECORDS = [
    Record.ok("cats/chelsea.jpg", {"model": "m", "predictions": [{"label": "tabby", "score": 0.45}]}),
    Record.failed("notes.jpg", "InvalidImage", "the file is not an image"),
    Record.ok("ünïcode/ø.jpg", {"model": "m", "predictions": []}),
]


def test_jsonl_chunk_holds_one_object_per_line(tmp_path: Path) -> None:
    writer = ChunkWriter(tmp_path, Shard(2, 4), "jsonl", next_seq=7)
    path = writer.commit(RECORDS)
    assert path is not None and path.name == "part-00002of00004-000007.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"path": "cats/chelsea.jpg", "status": "ok", "result": RECORDS[0].result}
    assert lines[1] == {"path": "notes.jpg", "status": "error",
                        "error": {"type": "InvalidImage", "message": "the file is not an image"}}
    assert read_chunk(path) == RECORDS
    assert writer.commit(RECORDS[:1]).name.endswith("-000008.jsonl")  # type: ignore[union-attr]
    assert writer.commit([]) is None


@pytest.mark.skipif(not parquet_available(), reason="pyarrow is not installed")
def test_parquet_chunk_has_flat_string_columns_and_round_trips(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = ChunkWriter(tmp_path, Shard(0, 1), "parquet", 0).commit(RECORDS)
    assert path is not None and path.suffix == ".parquet"
    table = pq.read_table(path)
    assert table.column_names == ["path", "status", "result", "error_type", "error_message"]
    assert table.column("status").to_pylist() == ["ok", "error", "ok"]
    assert json.loads(table.column("result")[0].as_py()) == RECORDS[0].result
    assert read_chunk(path) == RECORDS


def test_a_crash_while_writing_leaves_no_file_under_the_final_name(tmp_path: Path) -> None:
    def write_half_then_die(fh: BinaryIO) -> None:
        fh.write(b'{"path": "a.jpg", "sta')
        raise KeyboardInterrupt  # what a Ctrl-C mid-write looks like

    target = tmp_path / "part-00000of00001-000000.jsonl"
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write_half_then_die)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_an_existing_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "_job.json"
    atomic_write(target, lambda fh: fh.write(b"old"))
    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["_job.json"]


def test_output_images_mirror_the_source_tree_as_png(tmp_path: Path) -> None:
    png = encode(photo("coffee")[:32, :32], "PNG")
    path = save_output_image(tmp_path / "images", "kitchen/deep/coffee.jpg", png)
    assert path == tmp_path / "images" / "kitchen" / "deep" / "coffee.jpg.png"
    assert path.read_bytes() == png
    assert image_output_path(tmp_path, "a.b/c.webp") == tmp_path / "a.b" / "c.webp.png"
    assert image_output_path(tmp_path, "a/x.png") == tmp_path / "a" / "x.png"
    # two sources that differ only by extension never share an output file
    assert image_output_path(tmp_path, "a/x.jpg") != image_output_path(tmp_path, "a/x.png")
