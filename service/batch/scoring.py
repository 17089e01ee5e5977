"""One path -> one record, the same for every engine (in-process, HTTP, Triton, Ray workers)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VisionGateError
from .engines import Engine
from .records import Record
from .retry import RetryPolicy, with_retries
from .sources import display_path, read_image
from .writers import save_output_image

logger = logging.getLogger("visiongate.batch")


@dataclass
class ScoreContext:
    source: Path
    engine: Engine
    io: Executor  # file reads and output-image writes
    max_file_bytes: int
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    images_dir: Path | None = None  # super-resolution outputs, mirroring SOURCE
    dest: Path | None = None  # to record output paths relative to DEST
    retries: int = 0  # transient failures retried so far (all images)

    def _on_retry(self, exc: VisionGateError, delay: float) -> None:
        self.retries += 1
        logger.warning("transient %s (%s); retrying in %.2f s", exc.type, exc.message, delay)


async def score_path(ctx: ScoreContext, rel: str) -> Record:
    """Read, check, score and (for SR) save one image.

    Per-image failures (bad file, 4xx, a model failing on it) come back as an error record.
    ``RetriesExhausted`` propagates: the remote side is down, and the run must stop without
    recording this image, so that a re-run scores it; so does ``OutputWriteError`` (the output
    image could not be written).
    """
    shown = display_path(rel)
    loop = asyncio.get_running_loop()
    try:
        data = await loop.run_in_executor(ctx.io, read_image, ctx.source, rel, ctx.max_file_bytes)
        scored = await with_retries(lambda: ctx.engine.score(data), ctx.policy, on_retry=ctx._on_retry)
        result = scored.result
        if scored.image_png is not None:
            if ctx.images_dir is None:
                raise VisionGateError("the engine returned an image but no output folder is set")
            out = await loop.run_in_executor(ctx.io, save_output_image, ctx.images_dir, rel, scored.image_png)
            result = {**result, "output": display_path(out.relative_to(ctx.dest).as_posix() if ctx.dest
                                                       else str(out))}
    except VisionGateError as exc:
        return Record.failed(shown, exc.type, exc.message)
    except (NotImplementedError, ValueError, TypeError, KeyError, OSError) as exc:
        # a bug or an unexpected engine answer: record it on this image and go on
        logger.exception("unexpected error on %s", shown)
        return Record.failed(shown, "InternalError", f"{type(exc).__name__}: {exc}")
    return Record.ok(shown, result)
