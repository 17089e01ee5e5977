"""The stable split of the work list across the pods of an Indexed Job."""

from __future__ import annotations

import pytest

from visiongate.service.batch.cli import shard_from
from visiongate.service.batch.shard import Shard, shard_of

PATHS = [f"day{d:03d}/cam{c}/frame{f:05d}.jpg" for d in range(20) for c in range(3) for f in range(20)]


def test_every_path_belongs_to_exactly_one_shard() -> None:
    shards = [Shard(i, 7) for i in range(7)]
    owners = [[s.index for s in shards if s.owns(p)] for p in PATHS]
    assert all(len(o) == 1 for o in owners)


def test_the_split_is_roughly_even() -> None:
    counts = [sum(Shard(i, 4).owns(p) for p in PATHS) for i in range(4)]
    assert sum(counts) == len(PATHS)
    assert max(counts) - min(counts) < 0.1 * len(PATHS)


def test_adding_files_moves_no_existing_file() -> None:
    before = {p: shard_of(p, 5) for p in PATHS}
    grown = PATHS + [f"day999/new{i}.jpg" for i in range(500)]
    after = {p: shard_of(p, 5) for p in grown}
    assert all(after[p] == s for p, s in before.items())


def test_the_hash_is_fixed_across_processes_and_versions() -> None:
    # BLAKE2b, not Python's salted hash(): pods and re-runs must agree
    assert shard_of("cats/chelsea.jpg", 1000) == shard_of("cats/chelsea.jpg", 1000)
    assert [shard_of(p, 4) for p in ("a.jpg", "b.jpg", "c/d.png")] == [
        int.from_bytes(__import__("hashlib").blake2b(p.encode(), digest_size=8).digest(), "big") % 4
        for p in ("a.jpg", "b.jpg", "c/d.png")]


def test_parse_and_label() -> None:
    shard = Shard.parse("3/8")
    assert (shard.index, shard.count, shard.label, str(shard)) == (3, 8, "00003of00008", "3/8")


@pytest.mark.parametrize("text", ["8/8", "-1/4", "1", "a/b", "1/0"])
def test_parse_refuses_impossible_shards(text: str) -> None:
    with pytest.raises(ValueError):
        Shard.parse(text)


def test_shard_defaults_from_the_indexed_job_env() -> None:
    env = {"JOB_COMPLETION_INDEX": "2", "VISIONGATE_SHARD_COUNT": "5"}
    assert shard_from(None, env) == Shard(2, 5)
    assert shard_from("1/3", env) == Shard(1, 3)  # the flag wins
    assert shard_from(None, {}) == Shard(0, 1)
    with pytest.raises(ValueError, match="VISIONGATE_SHARD_COUNT"):
        shard_from(None, {"JOB_COMPLETION_INDEX": "2"})
