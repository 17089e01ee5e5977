"""The gates: ruff (the project's whole rule set) and ``mypy --strict`` stay at 0 findings.

Both run from the repository root with pyproject.toml's configuration, exactly as a developer runs them:
``ruff check service export tests bench`` and ``python -m mypy service export``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "pip install -e '.[test]'"


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip(f"ruff is not installed ({INSTALL})")
    done = subprocess.run([ruff, "check", "service", "export", "tests", "bench"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_finds_nothing() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip(f"mypy is not installed ({INSTALL})")
    # strict and the pydantic plugin come from [tool.mypy]; its cache (.mypy_cache, git-ignored) keeps reruns quick
    done = subprocess.run([sys.executable, "-m", "mypy", "service", "export"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
