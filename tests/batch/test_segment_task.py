"""``visiongate score --task segment``: RLE masks in the records, scored exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from batch_photos import ok, records
from PIL import Image
from segment_models import ROOT, segment_repository

from support import encode, photo
from visiongate.service.batch.cli import main
from visiongate.service.vision.masks import decode_rle


def test_segment_records_hold_rle_masks_once(tmp_path: Path) -> None:
    repo = segment_repository(tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    (src / "astronaut.jpg").write_bytes(encode(photo("astronaut"), quality=92))
    (src / "rocket.png").write_bytes(encode(photo("rocket"), "PNG"))
    (src / "broken.jpg").write_bytes(b"not an image")
    args = [
        str(src),
        "--task",
        "segment",
        "--out",
        str(tmp_path / "out"),
        "--repository",
        str(repo),
        "--progress",
        "none",
    ]
    assert main(args) == 0
    got = records(tmp_path / "out")
    person = decode_rle(ok(got["astronaut.jpg"])["masks"]["person"])
    with Image.open(ROOT / "tests/data/astronaut_person_mask.png") as img:
        reference = np.asarray(img) > 0
    assert person.shape == (512, 512) and (person & reference).sum() / reference.sum() >= 0.95
    assert set(ok(got["rocket.png"])["masks"]) == {"background"}
    assert got["broken.jpg"].status == "error"
    assert main(args) == 0  # a rerun finds everything done
    assert len(records(tmp_path / "out")) == 3
