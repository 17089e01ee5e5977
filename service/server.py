"""Running the app under uvicorn, with a drain on SIGTERM.

On the first SIGTERM/SIGINT ``/readyz`` turns 503 at once while requests are still served for
``shutdown_delay_s`` (time for load balancers and Kubernetes endpoints to stop sending), then
uvicorn stops accepting connections and lets in-flight requests finish within
``drain_timeout_s``; the lifespan then closes the backend, which finishes queued work.
A second signal exits at once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .request_log import configure_logging
from .security import AuthNotConfigured, TLSConfigError, build_gate, uvicorn_tls_options
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


def _uvicorn_options(settings: Settings) -> dict[str, object]:
    return {
        "host": settings.host, "port": settings.port, "log_level": settings.log_level,
        "http": "httptools", "loop": "uvloop", "access_log": False,
        "timeout_graceful_shutdown": int(settings.drain_timeout_s) or None,
        # the app's own admission answers 503 + Retry-After first; uvicorn's hard cap (a bare 503)
        # stays above it, with room for health probes
        "limit_concurrency": settings.max_open_requests * 2 + 64 if settings.max_open_requests else None,
        "backlog": 2048,
        **uvicorn_tls_options(settings),
        **({"log_config": None} if settings.log_format == "json" else {}),  # uvicorn's logs as JSON too
    }


def check_can_serve(settings: Settings) -> None:
    """Exit with the reason, before any model loads: no API keys beyond loopback, unusable TLS files."""
    try:
        build_gate(settings)
        uvicorn_tls_options(settings)
    except (AuthNotConfigured, TLSConfigError) as exc:
        sys.exit(str(exc))


def serve(settings: Settings) -> None:
    configure_logging(settings)
    check_can_serve(settings)
    if settings.http_workers > 1:
        _serve_workers(settings)
        return
    app = create_app(settings)
    config = uvicorn.Config(app, **_uvicorn_options(settings))  # type: ignore[arg-type]
    DrainingServer(config, app, settings.shutdown_delay_s).run()


def _serve_workers(settings: Settings) -> None:
    """Several uvicorn worker processes, each building the app (and loading every model) from the
    environment. For hosts where one event loop is the bottleneck (GPU hosts); on a small CPU host
    one process with several inference threads is faster. Each worker drains on SIGTERM; the
    ``shutdown_delay_s`` readiness flip applies to single-process serving only."""
    for name, value in settings.model_dump(mode="json").items():
        os.environ[f"VISIONGATE_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    uvicorn.run("service.app:create_app", factory=True, workers=settings.http_workers,
                **_uvicorn_options(settings))  # type: ignore[arg-type]
