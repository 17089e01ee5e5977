"""Running the app under uvicorn, with a drain on SIGTERM.

On the first SIGTERM/SIGINT ``/readyz`` turns 503 at once while requests are still served for
``shutdown_delay_s`` (time for load balancers and Kubernetes endpoints to stop sending), then
uvicorn stops accepting connections and lets in-flight requests finish within
``drain_timeout_s``; the lifespan then closes the backend, which finishes queued work.
A second signal exits at once.
"""

from __future__ import annotations

import logging
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .deadlines import DeadlineMiddleware
from .settings import Settings


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, shutdown_delay_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._shutdown_delay_s = shutdown_delay_s
        self._draining_since: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining_since is not None or self._shutdown_delay_s <= 0:
            self._app.state.draining = True
            super().handle_exit(sig, frame)
            return
        self._draining_since = time.monotonic()
        self._app.state.draining = True
        logging.getLogger("visiongate").info("draining: not ready, serving for %.1f s more", self._shutdown_delay_s)
        timer = threading.Timer(self._shutdown_delay_s, super().handle_exit, args=(sig, frame))
        timer.daemon = True
        timer.start()


def serve(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # DeadlineMiddleware is idempotent: harmless if create_app installs it too
    config = uvicorn.Config(
        DeadlineMiddleware(app, settings.request_timeout_s), host=settings.host, port=settings.port, log_level=settings.log_level,
        http="httptools", loop="uvloop", access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        limit_concurrency=settings.max_open_requests or None, backlog=2048,
    )
    DrainingServer(config, app, settings.shutdown_delay_s).run()
