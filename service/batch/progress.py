"""Progress: a tqdm bar (img/s, ETA) on a terminal, plain periodic log lines elsewhere (CI, pods)."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Literal, TextIO

logger = logging.getLogger("visiongate.batch")

Mode = Literal["auto", "bar", "log", "none"]


@dataclass
class Summary:
    listed: int = 0  # image files under SOURCE
    ignored: int = 0  # other files under SOURCE
    in_shard: int = 0
    skipped_done: int = 0  # committed by an earlier run
    scored: int = 0  # status ok this run
    failed: int = 0  # status error this run
    chunks: int = 0  # chunk files committed this run
    elapsed_s: float = 0.0  # the whole run: listing, model load, scoring
    scoring_s: float = 0.0  # from the first image read to the last chunk committed
    stopped: str | None = None  # why the run ended early, if it did
    unscorable: int = 0  # entries recorded as errors without scoring (unreadable folder, FIFO...)

    @property
    def images_per_s(self) -> float:
        """Steady-state rate: images finished per second of scoring (model load left out)."""
        scored = self.scored + self.failed - self.unscorable
        return scored / self.scoring_s if self.scoring_s > 0 else 0.0

    def line(self) -> str:
        text = (f"scored {self.scored}, failed {self.failed}, skipped-as-done {self.skipped_done} "
                f"(of {self.in_shard} in this shard, {self.listed} images under SOURCE)"
                + (f", {self.unscorable} entries not scorable (recorded as errors)" if self.unscorable else "")
                + "; "
                f"{self.chunks} chunks in {self.elapsed_s:.1f} s, "
                f"{self.images_per_s:.1f} img/s while scoring")
        return text + (f"; STOPPED: {self.stopped}" if self.stopped else "")


class Progress:
    """Counts finished images; draws a bar on a TTY, else logs every ``log_every_s`` seconds."""

    def __init__(self, total: int, mode: Mode = "auto", stream: TextIO | None = None,
                 log_every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() and _has_tqdm() else "log"
        self.mode = mode
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._log_every_s = log_every_s
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="img", file=self.stream, dynamic_ncols=True, smoothing=0.1)

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if self._bar is not None:
            self._bar.update(1)
            if not ok:
                self._bar.set_postfix(failed=self.failed, refresh=False)
        elif self.mode == "log":
            now = time.monotonic()
            if now - self._last_log >= self._log_every_s:
                self._last_log = now
                self.log_line(now)

    def log_line(self, now: float | None = None) -> None:
        now = now or time.monotonic()
        rate = self.done / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        logger.info("progress %d/%d (%.0f%%) %.1f img/s, ETA %s, failed %d", self.done, self.total, pct,
                    rate, _fmt_eta(eta), self.failed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _has_tqdm() -> bool:
    import importlib.util

    return importlib.util.find_spec("tqdm") is not None


def _fmt_eta(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
