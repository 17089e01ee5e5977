"""Exactly-once for real: ``visiongate score`` killed with SIGKILL mid-run, resumed, counted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from batch_photos import write_jpegs

from visiongate.service.batch.ledger import chunk_files, read_chunk

N_IMAGES = 240


def _command(src: Path, dest: Path, repo: Path) -> list[str]:
    return [sys.executable, "-m", "visiongate.service.cli", "score", str(src), "--task", "classify", "--out", str(dest),
            "--repository", str(repo), "--chunk-size", "8", "--in-flight", "8", "--progress", "log"]


def _kill_after_chunks(cmd: list[str], dest: Path, chunks: int, extra_s: float) -> None:
    """Start the command, wait until ``chunks`` chunk files exist (plus ``extra_s``), SIGKILL it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(chunk_files(dest)) < chunks and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(extra_s)
        assert proc.poll() is None, "the run finished before it could be killed; make the folder bigger"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_scores_every_image_exactly_once(tmp_path: Path,
                                                                           classify_repo: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "out"
    expected = set(write_jpegs(src, N_IMAGES, size=128))
    cmd = _command(src, dest, classify_repo)

    _kill_after_chunks(cmd, dest, chunks=1, extra_s=0.0)  # right after a commit
    after_first = len(chunk_files(dest))
    _kill_after_chunks(cmd, dest, chunks=after_first + 3, extra_s=0.013)  # somewhere in between
    killed_twice = {r.path for c in chunk_files(dest) for r in read_chunk(c)}
    assert 0 < len(killed_twice) < N_IMAGES

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"skipped-as-done {len(killed_twice)}" in done.stderr

    seen = Counter(r.path for c in chunk_files(dest) for r in read_chunk(c))  # every chunk parses whole
    assert set(seen) == expected  # no gap
    assert max(seen.values()) == 1  # no duplicate
    assert all(r.status == "ok" for c in chunk_files(dest) for r in read_chunk(c))
    assert not list(dest.glob(".part-*.tmp"))  # the resumed run cleared the killed runs' temps


@pytest.mark.slow
def test_sigterm_commits_the_images_in_flight_and_exits_3_for_a_resume(tmp_path: Path,
                                                                        classify_repo: Path) -> None:
    """What a Kubernetes eviction does: SIGTERM, a grace period, then the pod is gone."""
    src, dest = tmp_path / "src", tmp_path / "out"
    expected = set(write_jpegs(src, 160, size=128))
    cmd = _command(src, dest, classify_repo)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not chunk_files(dest) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "finished before the signal; make the folder bigger"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "STOPPED: SIGTERM" in err
    stopped_with = Counter(r.path for c in chunk_files(dest) for r in read_chunk(c))
    assert 0 < len(stopped_with) < len(expected) and max(stopped_with.values()) == 1

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = Counter(r.path for c in chunk_files(dest) for r in read_chunk(c))
    assert set(seen) == expected and max(seen.values()) == 1
