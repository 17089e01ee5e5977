"""Batch scoring on a poisoned folder: names that are not UTF-8, a FIFO, a symlink to /dev/zero,
a dangling symlink, an unreadable folder, and a results disk that refuses writes.

Each run is a real ``visiongate score`` process with a time limit, so a run that would hang (a FIFO
read blocks forever) fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from batch_photos import records

from support import encode, photo

ROOT = Path(__file__).resolve().parents[2]
EXIT_OUTPUT = 4


def score(source: Path, dest: Path, repo: Path, preexec: Callable[[], None] | None = None,
          prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "visiongate.service.cli", "score", os.fsdecode(source), "--task", "classify",
         "--out", str(dest), "--repository", str(repo), "--progress", "none"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, preexec_fn=preexec, check=False)


@pytest.fixture
def poisoned(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    jpeg = encode(photo("chelsea"), quality=90)
    (root / "chelsea.jpg").write_bytes(jpeg)
    with open(os.fsencode(root) + b"/bad\xffname.jpg", "wb") as fh:  # not UTF-8
        fh.write(encode(photo("coffee"), quality=90))
    os.mkfifo(root / "pipe.jpg")
    (root / "zero.jpg").symlink_to("/dev/zero")
    (root / "gone.jpg").symlink_to(root / "nothing-here.jpg")
    return root


def test_a_poisoned_folder_is_scored_with_every_bad_entry_recorded(poisoned: Path, classify_repo: Path,
                                                                   tmp_path: Path) -> None:
    dest = tmp_path / "out"
    done = score(poisoned, dest, classify_repo)
    assert done.returncode == 0, done.stderr
    got = records(dest)
    assert sorted(got) == ["bad\\xffname.jpg", "chelsea.jpg", "gone.jpg", "pipe.jpg", "zero.jpg"]
    assert got["chelsea.jpg"].status == "ok" and got["bad\\xffname.jpg"].status == "ok"
    assert got["bad\\xffname.jpg"].result["predictions"][0]["label"] == "espresso"  # type: ignore[index]
    assert (got["pipe.jpg"].error_type, got["pipe.jpg"].error_message) == (
        "NotARegularFile", "the entry is a FIFO (named pipe), not an image file")
    assert got["zero.jpg"].error_type == "NotARegularFile" and "character device" in str(got["zero.jpg"].error_message)
    assert got["gone.jpg"].error_type == "InvalidImage" and "could not be read" in str(got["gone.jpg"].error_message)
    # every line is valid UTF-8 JSON
    for chunk in dest.glob("part-*.jsonl"):
        for line in chunk.read_bytes().splitlines():
            json.loads(line.decode("utf-8"))
    again = score(poisoned, dest, classify_repo)
    assert again.returncode == 0, again.stderr
    assert len(records(dest)) == 5  # nothing scored or recorded twice
    assert json.loads((dest / "_summary-00000of00001.json").read_text())["skipped_done"] == 2


def _without_root_file_access() -> tuple[str, ...]:
    """chmod 000 stops everyone but root; as root, run without the capabilities that bypass it."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")


def test_an_unreadable_folder_is_recorded_not_lost(tmp_path: Path, classify_repo: Path) -> None:
    source = tmp_path / "src"
    (source / "locked").mkdir(parents=True)
    (source / "chelsea.jpg").write_bytes(encode(photo("chelsea"), quality=90))
    (source / "locked" / "coffee.jpg").write_bytes(encode(photo("coffee"), quality=90))
    (source / "locked").chmod(0)
    dest = tmp_path / "out"
    try:
        done = score(source, dest, classify_repo, prefix=_without_root_file_access())
    finally:
        (source / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr
    got = records(dest)
    assert sorted(got) == ["chelsea.jpg", "locked"]
    assert got["locked"].error_type == "UnreadableFolder"
    assert "Permission denied" in str(got["locked"].error_message)
    again = score(source, dest, classify_repo)  # readable again: the re-run scores what is inside
    assert again.returncode == 0, again.stderr
    assert records(dest)["locked/coffee.jpg"].status == "ok"


def _small_files_only() -> None:
    """A results disk that refuses writes: every file is capped at 2 kB (RLIMIT_FSIZE; writes past
    it fail with EFBIG, as they fail with ENOSPC on a full disk). Needs no root and no mount."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_a_results_disk_that_refuses_writes_exits_4_and_the_run_resumes(tmp_path: Path,
                                                                       classify_repo: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for i, name in enumerate(("chelsea", "coffee", "astronaut", "rocket", "camera", "motorcycle") * 2):
        (source / f"{i:02d}-{name}.jpg").write_bytes(encode(photo(name), quality=85))
    dest = tmp_path / "out"
    full = score(source, dest, classify_repo, preexec=_small_files_only)
    assert full.returncode == EXIT_OUTPUT, full.stderr
    assert "could not write" in full.stderr and "File too large" in full.stderr
    assert "Traceback" not in full.stderr
    assert not list(dest.glob(".*.tmp"))  # no half-written temp file left behind
    resumed = score(source, dest, classify_repo)
    assert resumed.returncode == 0, resumed.stderr
    got = records(dest)
    assert len(got) == 12 and all(r.status == "ok" for r in got.values())
