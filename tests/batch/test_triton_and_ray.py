"""The two other ways to run the same scoring: Triton directly, and Ray Data ``map_batches``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from batch_photos import ok, records

from visiongate.service.batch.cli import main
from visiongate.service.batch.ledger import chunk_files
from visiongate.service.batch.records import Record

CAT_IDS = {281, 282, 285}


def top1(recs: dict[str, Record]) -> dict[str, int | str | None]:
    return {p: ok(r)["predictions"][0]["class_id"] if r.status == "ok" else r.error_type
            for p, r in recs.items()}


@pytest.mark.triton
@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
def test_scoring_via_triton_gives_the_in_process_answers(
        scheme: str, mixed_folder: Path, triton_classifier, classify_repo: Path,
        tmp_path: Path) -> None:
    port = triton_classifier.grpc_port if scheme == "triton" else triton_classifier.http_port
    base = ["--task", "classify", "--progress", "none", "--model", "efficientnet_lite0",
            "--repository", str(classify_repo)]  # labels are read from the repository Triton serves
    assert main([str(mixed_folder), "--out", str(tmp_path / "t"), "--via", f"{scheme}://127.0.0.1:{port}",
                 *base]) == 0
    assert main([str(mixed_folder), "--out", str(tmp_path / "l"), *base]) == 0
    via_triton, local = records(tmp_path / "t"), records(tmp_path / "l")
    assert top1(via_triton) == top1(local)
    assert top1(via_triton)["cats/chelsea.jpg"] in CAT_IDS
    assert ok(via_triton["cats/chelsea.jpg"])["predictions"][0]["label"] in {
        "tabby", "tiger cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def local_ray():
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed: pip install 'visiongate[ray]'")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")  # Ray Data's own internals
def test_ray_data_scoring_writes_the_same_records_and_resumes(local_ray, mixed_folder: Path,
                                                              classify_repo: Path, tmp_path: Path) -> None:
    base = ["--task", "classify", "--progress", "none", "--repository", str(classify_repo),
            "--chunk-size", "3"]
    assert main([str(mixed_folder), "--out", str(tmp_path / "l"), *base]) == 0
    # first half of the shards on Ray, then everything: the second run skips what the first did
    on_ray = [str(mixed_folder), "--out", str(tmp_path / "r"), "--engine", "ray"]
    assert main([*on_ray, "--shard", "0/2", *base]) == 0
    first = records(tmp_path / "r")
    assert 0 < len(first) < 8
    assert main([*on_ray, "--shard", "1/2", *base]) == 0
    assert top1(records(tmp_path / "r")) == top1(records(tmp_path / "l"))
    assert len(chunk_files(tmp_path / "r")) >= 3  # --chunk-size 3 holds on Ray too
