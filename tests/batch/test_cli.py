"""``visiongate score`` end to end, in-process on the embedded runtime with real weights."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from batch_photos import ok, records
from PIL import Image

from support import encode, photo
from visiongate.service.batch.cli import main
from visiongate.service.batch.ledger import chunk_files
from visiongate.service.batch.progress import Progress
from visiongate.service.batch.writers import parquet_available

CAT_IDS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


def summary(dest: Path, shard: str = "00000of00001") -> dict[str, object]:
    return json.loads((dest / f"_summary-{shard}.json").read_text())


def score(source: Path, dest: Path, repo: Path, *extra: str, task: str = "classify") -> int:
    return main([str(source), "--task", task, "--out", str(dest), "--repository", str(repo),
                 "--progress", "none", *extra])


def test_classifies_every_photo_and_records_every_bad_file(mixed_folder: Path, classify_repo: Path,
                                                          tmp_path: Path) -> None:
    dest = tmp_path / "out"
    assert score(mixed_folder, dest, classify_repo, "--top-k", "3") == 0
    got = records(dest)
    assert sorted(got) == ["cats/chelsea.jpg", "corrupt.png", "empty.png", "kitchen/coffee.jpg",
                           "kitchen/deep/camera.webp", "kitchen/deep/rocket.png", "notes.jpg",
                           "truncated.jpg"]
    top = {p: ok(r)["predictions"][0]["class_id"] for p, r in got.items() if r.status == "ok"}
    assert top["cats/chelsea.jpg"] in CAT_IDS
    assert top["kitchen/coffee.jpg"] == 967  # espresso
    assert top["kitchen/deep/rocket.png"] in {657, 744}  # missile, projectile
    assert len(ok(got["cats/chelsea.jpg"])["predictions"]) == 3
    assert ok(got["cats/chelsea.jpg"])["model"] == "efficientnet_lite0"
    errors = {p: (r.error_type, r.error_message) for p, r in got.items() if r.status == "error"}
    assert errors["truncated.jpg"][0] == "InvalidImage" and "truncated" in errors["truncated.jpg"][1]
    assert errors["notes.jpg"][0] == "InvalidImage" and "not an image" in errors["notes.jpg"][1]
    assert errors["empty.png"] == ("InvalidImage", "the file is empty")
    assert errors["corrupt.png"][0] == "InvalidImage"
    s = summary(dest)
    assert (s["scored"], s["failed"], s["skipped_done"], s["listed"], s["ignored"]) == (4, 4, 0, 8, 1)


def test_a_rerun_skips_everything_done_and_scores_only_new_files(mixed_folder: Path, classify_repo: Path,
                                                                 tmp_path: Path) -> None:
    dest = tmp_path / "out"
    assert score(mixed_folder, dest, classify_repo) == 0
    first = {c.name: c.read_bytes() for c in chunk_files(dest)}
    assert score(mixed_folder, dest, classify_repo) == 0
    assert {c.name: c.read_bytes() for c in chunk_files(dest)} == first  # nothing rewritten
    assert (summary(dest)["scored"], summary(dest)["skipped_done"]) == (0, 8)

    (mixed_folder / "new").mkdir()
    (mixed_folder / "new" / "astronaut.jpg").write_bytes(encode(photo("astronaut")))
    assert score(mixed_folder, dest, classify_repo) == 0
    assert (summary(dest)["scored"], summary(dest)["skipped_done"]) == (1, 8)
    assert len(records(dest)) == 9


def test_files_over_the_byte_or_pixel_limits_are_errors_and_the_run_goes_on(
        mixed_folder: Path, classify_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chelsea_bytes = (mixed_folder / "cats/chelsea.jpg").stat().st_size
    dest = tmp_path / "bytes"
    assert score(mixed_folder, dest, classify_repo, "--max-file-bytes", str(chelsea_bytes - 1)) == 0
    got = records(dest)
    assert got["cats/chelsea.jpg"].error_type == "PayloadTooLarge"
    assert got["kitchen/deep/camera.webp"].status == "ok"  # smaller than the limit

    monkeypatch.setenv("VISIONGATE_MAX_IMAGE_PIXELS", str(300 * 300))  # the gateway's own setting
    dest = tmp_path / "pixels"
    assert score(mixed_folder, dest, classify_repo) == 0
    got = records(dest)
    assert got["cats/chelsea.jpg"].error_type == "ImageTooLarge"  # 451x300
    assert "VISIONGATE_MAX_IMAGE_PIXELS" in got["cats/chelsea.jpg"].error_message


@pytest.mark.skipif(not parquet_available(), reason="pyarrow is not installed")
def test_parquet_output_holds_the_same_records(mixed_folder: Path, classify_repo: Path,
                                               tmp_path: Path) -> None:
    assert score(mixed_folder, tmp_path / "j", classify_repo) == 0
    assert score(mixed_folder, tmp_path / "p", classify_repo, "--format", "parquet") == 0
    assert all(c.suffix == ".parquet" for c in chunk_files(tmp_path / "p"))
    as_jsonl, as_parquet = records(tmp_path / "j"), records(tmp_path / "p")
    assert as_jsonl.keys() == as_parquet.keys()
    for path, rec in as_jsonl.items():
        other = as_parquet[path]
        assert (rec.status, rec.error_type) == (other.status, other.error_type)
        if rec.status == "ok":
            assert [p["class_id"] for p in ok(rec)["predictions"]] == [
                p["class_id"] for p in ok(other)["predictions"]]


def test_shards_split_the_folder_without_overlap_or_gap(
        mixed_folder: Path, classify_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out"
    monkeypatch.setenv("VISIONGATE_SHARD_COUNT", "3")
    per_shard = []
    for i in range(3):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(i))  # what an Indexed Job pod sees
        assert score(mixed_folder, dest, classify_repo) == 0
        per_shard.append(summary(dest, f"{i:05d}of00003")["in_shard"])
    assert sum(per_shard) == 8  # type: ignore[arg-type]
    assert len(records(dest)) == 8  # records() fails on any duplicate
    labels = {c.name.split("-")[1] for c in chunk_files(dest)}
    assert labels <= {"00000of00003", "00001of00003", "00002of00003"}


def test_a_resume_with_other_task_settings_is_refused(
        mixed_folder: Path, classify_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "out"
    assert score(mixed_folder, dest, classify_repo, "--top-k", "3") == 0
    assert score(mixed_folder, dest, classify_repo, "--top-k", "5") == 2
    assert "another job" in capsys.readouterr().err


def test_an_unknown_model_fails_before_scoring(mixed_folder: Path, classify_repo: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert score(mixed_folder, tmp_path / "out", classify_repo, "--model", "resnet9000") == 2
    assert "no model named 'resnet9000'" in capsys.readouterr().err
    assert chunk_files(tmp_path / "out") == []


def test_detect_records_boxes_in_original_pixels(tmp_path: Path, detect_repo: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "coffee.jpg").write_bytes(encode(photo("coffee"), quality=92))
    (src / "motorcycle.jpg").write_bytes(encode(photo("motorcycle"), quality=92))
    assert score(src, tmp_path / "out", detect_repo, task="detect") == 0
    got = records(tmp_path / "out")
    coffee = ok(got["coffee.jpg"])
    assert coffee["model"] == "yolov3_tiny" and coffee["image"] == {"width": 600, "height": 400}
    assert "cup" in {d["label"] for d in coffee["detections"]}
    for d in coffee["detections"]:
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 400
    assert "motorcycle" in {d["label"] for d in ok(got["motorcycle.jpg"])["detections"]}


def test_super_resolution_writes_images_mirroring_the_source(tmp_path: Path, sr_repo: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    small = photo("chelsea")[100:196, 150:278]  # 128x96
    (src / "a" / "b" / "cat.png").write_bytes(encode(small, "PNG"))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    dest = tmp_path / "out"
    assert score(src, dest, sr_repo, task="super-resolve") == 0
    got = records(dest)
    rec = ok(got["a/b/cat.png"])
    assert rec["output"] == "images/a/b/cat.png" and rec["scale"] == 2
    assert rec["input_size"] == [128, 96] and rec["output_size"] == [256, 192]
    with Image.open(dest / "images" / "a" / "b" / "cat.png") as img:
        out = np.asarray(img.convert("RGB"))
    assert out.shape == (192, 256, 3)
    # the upscaled cat, scaled back down, is the cat
    down = np.asarray(Image.fromarray(out).resize((128, 96), Image.Resampling.BOX)).astype(float)
    assert np.abs(down - small).mean() < 6
    assert got["broken.jpg"].error_type == "InvalidImage"
    assert not (dest / "images" / "broken.png").exists()


def test_progress_logs_plain_lines_when_not_on_a_terminal(
        mixed_folder: Path, classify_repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="visiongate.batch")
    assert main([str(mixed_folder), "--task", "classify", "--out", str(tmp_path / "o"), "--repository",
                 str(classify_repo), "--progress", "log", "--log-every", "0"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress")]
    assert lines and lines[-1].startswith("progress 8/8 (100%)") and "img/s" in lines[-1]


def test_progress_draws_a_bar_with_rate_and_eta_on_a_terminal() -> None:
    stream = io.StringIO()
    bar = Progress(total=4, mode="bar", stream=stream)
    for succeeded in (True, True, False, True):
        bar.update(succeeded)
    bar.close()
    text = stream.getvalue()
    assert "4/4" in text and "img/s" in text and "failed=1" in text
