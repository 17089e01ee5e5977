"""Running the app under uvicorn, with a drain on SIGTERM.

On the first SIGTERM/SIGINT readiness turns 503 at once (load balancers stop sending), then
uvicorn stops accepting connections and lets in-flight requests finish within
``drain_timeout_s``; the lifespan then closes the backend.
"""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .settings import Settings


class DrainingServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame: object) -> None:
        app = self.config.loaded_app if self.config.loaded else None
        target = getattr(app, "app", app)
        while target is not None and not hasattr(target, "state") and hasattr(target, "app"):
            target = target.app
        if target is not None and hasattr(target, "state"):
            target.state.draining = True
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def serve(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
        http="httptools", loop="uvloop", access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        limit_concurrency=None, backlog=2048,
    )
    DrainingServer(config).run()
