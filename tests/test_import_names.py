"""One installed namespace: the gateway is ``visiongate.service`` and the export stage
``visiongate.export``, so nothing collides with a user's own ``service`` or ``export`` module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# an absolute import of the bare folder names would load a second copy of every module it touches
BARE = re.compile(r"^\s*(from|import)\s+(service|export)(\.|\s|$)", re.M)


def test_no_code_imports_the_bare_folder_names() -> None:
    offenders = [f"{p.relative_to(ROOT)}:{s.count(chr(10), 0, m.start()) + 1}"
                 for folder in ("service", "export", "tests", "bench")
                 for p in (ROOT / folder).rglob("*.py")
                 for s in [p.read_text(encoding="utf-8", errors="replace")]
                 for m in BARE.finditer(s)]
    assert offenders == []


def test_installed_names_are_under_visiongate_only() -> None:
    """Run outside the repository (so its folders are not on the path): only ``visiongate`` imports."""
    probe = ("import importlib.util as u, visiongate.service, visiongate.export; "
             "print(u.find_spec('service') is None, u.find_spec('export') is None, visiongate.__version__)")
    out = subprocess.run([sys.executable, "-c", probe], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.split()[:2] == ["True", "True"], out.stdout + out.stderr
