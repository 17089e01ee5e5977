"""Poll mode of model control: notice new, changed and removed models in the repository.

Every ``interval_s`` the repository's model folders are fingerprinted (names, version folders,
file sizes and modification times). A new or changed model is (re)loaded, a removed one unloaded;
requests admitted before a swap finish on the model they were admitted to.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..errors import VisionGateError
from .onnxruntime import OnnxRuntimeBackend

logger = logging.getLogger("visiongate.model_control")

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(model_dir: Path) -> Fingerprint:
    """What changes when a model folder's content changes (a new version, an edited config)."""
    entries = []
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(model_dir).parts):
            stat = path.stat()
            entries.append((str(path.relative_to(model_dir)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


async def poll_repository(backend: OnnxRuntimeBackend, interval_s: float) -> None:
    """Run until cancelled, keeping ``backend`` in step with its repository."""
    seen = {name: fingerprint(d) for name, d in backend.model_dirs().items()}
    while True:
        await asyncio.sleep(interval_s)
        current = await asyncio.to_thread(lambda: {n: fingerprint(d) for n, d in backend.model_dirs().items()})
        for name in sorted(set(current) | set(seen)):
            if current.get(name) == seen.get(name):
                continue
            try:
                if name in current:
                    logger.info("repository changed: (re)loading %s", name)
                    await backend.load(name)
                else:
                    logger.info("repository changed: %s was removed; unloading it", name)
                    await backend.unload(name)
                    backend.forget(name)
            except VisionGateError as exc:
                logger.error("model %s: %s", name, exc.message)
        seen = current
