"""Running the app under uvicorn, with connection guards and a drain on SIGTERM that answers.

On the first SIGTERM/SIGINT ``/readyz`` turns 503 at once while requests are still served for
``shutdown_delay_s`` (time for load balancers and Kubernetes endpoints to stop sending). Then:

1. connections the kernel has already accepted (the listen backlog) are taken, so their clients
   get an answer rather than a reset, and the listener closes;
2. every connection is told to drain: a request in progress finishes and its connection closes
   after the answer; a request whose headers are arriving is served; an idle connection closes
   after a short grace unless a request starts on it;
3. past ``drain_timeout_s``, requests still running get a JSON 503 + ``Retry-After`` (``EdgeApp``);
4. the lifespan closes the backend, and the process exits 0.

A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .connections import ConnectionLimits, GuardedHttpToolsProtocol
from .edge import EdgeApp
from .request_log import configure_logging
from .security import AuthNotConfigured, TLSConfigError, build_gate, uvicorn_tls_options
from .settings import Settings

logger = logging.getLogger("visiongate")

#: how long an idle connection may still start a request once draining begins (bytes in flight)
DRAIN_IDLE_GRACE_S = 0.5


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, settings: Settings) -> None:
        super().__init__(config)
        self._app = app
        self._shutdown_delay_s = settings.shutdown_delay_s
        self._drain_timeout_s = settings.drain_timeout_s
        self._draining_since: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining_since is not None or self._shutdown_delay_s <= 0:
            self._app.state.draining = True
            super().handle_exit(sig, frame)
            return
        self._draining_since = time.monotonic()
        self._app.state.draining = True
        logger.info("draining: not ready, serving for %.1f s more", self._shutdown_delay_s)
        timer = threading.Timer(self._shutdown_delay_s, super().handle_exit, args=(sig, frame))
        timer.daemon = True
        timer.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._app.state.draining = True
        adopted = 0
        for server in self.servers:
            for listener in server.sockets:
                adopted += await self._adopt_backlog(listener.fileno())
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        logger.info("draining %d connections (%d from the listen backlog), %d requests in flight",
                    len(state.connections), adopted, len(state.tasks))
        grace = min(DRAIN_IDLE_GRACE_S, self._drain_timeout_s)
        for connection in list(state.connections):
            if isinstance(connection, GuardedHttpToolsProtocol):
                connection.begin_drain(grace)
            else:
                connection.shutdown()
        deadline = loop.time() + self._drain_timeout_s
        while (state.connections or state.tasks) and not self.force_exit and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if state.tasks:
            logger.warning("drain timeout (%.1f s): answering %d unfinished requests 503",
                           self._drain_timeout_s, len(state.tasks))
            for task in list(state.tasks):
                task.cancel()
            await asyncio.wait(list(state.tasks), timeout=2.0)
        for connection in list(state.connections):
            connection.transport.close()
        if not self.force_exit:
            await self.lifespan.shutdown()
        # uvicorn re-raises the captured signal after a clean shutdown, so the process would end
        # "killed by SIGTERM" (-15); a drain that completed is a clean exit (0)
        self._captured_signals.clear()

    async def _adopt_backlog(self, fd: int) -> int:
        """Accept every connection waiting in the listen backlog and serve it like any other."""
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=self.server_state,  # type: ignore[call-arg]
                                              app_state=self.lifespan.state, _loop=loop)

        adopted = 0
        with socket.socket(fileno=os.dup(fd)) as listener:
            listener.setblocking(False)
            while True:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # e.g. out of file descriptors: the rest get a reset
                    logger.warning("could not take a waiting connection while draining: %s", exc)
                    break
                conn.setblocking(False)
                await loop.connect_accepted_socket(protocol, conn)
                adopted += 1
        return adopted


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(header_timeout_s=settings.header_timeout_s, idle_timeout_s=settings.idle_timeout_s,
                            max_header_bytes=settings.max_header_bytes, max_connections=settings.max_connections)


def max_requests(settings: Settings) -> int | None:
    """Requests in flight before ``EdgeApp`` refuses: above the app's own admission (which
    answers first, per model), with room for model listing, metrics and docs."""
    return settings.max_open_requests * 2 + 64 if settings.max_open_requests else None


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host, "port": settings.port, "log_level": settings.log_level,
        "http": "visiongate.service.connections:GuardedHttpToolsProtocol", "loop": "uvloop", "access_log": False,
        "timeout_keep_alive": settings.idle_timeout_s,
        "timeout_graceful_shutdown": int(settings.drain_timeout_s) or None,
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
    log_origin(settings)
    check_can_serve(settings)
    if settings.http_workers > 1:
        _serve_workers(settings)
        return
    GuardedHttpToolsProtocol.configure(connection_limits(settings))
    app = create_app(settings)
    config = uvicorn.Config(EdgeApp(app, max_requests(settings)), **_uvicorn_options(settings))
    DrainingServer(config, app, settings).run()


def log_origin(settings: Settings) -> None:
    """Say where models come from; a repository path that does not exist is an error worth a line
    (the gateway still starts, not ready, so that probes and logs say why)."""
    if settings.backend == "triton":
        logger.info("backend triton at %s (%s)", settings.triton_url, settings.triton_protocol)
        return
    repository = settings.repository.resolve()
    if not repository.is_dir():
        logger.error("model repository %s does not exist (VISIONGATE_REPOSITORY / --repository): "
                     "no model will load and /readyz will answer 503", repository)
    else:
        logger.info("backend onnxruntime, model repository %s", repository)


def worker_app() -> EdgeApp:
    """The app of one uvicorn worker process (settings from the environment ``_serve_workers`` set)."""
    settings = Settings()
    GuardedHttpToolsProtocol.configure(connection_limits(settings))
    return EdgeApp(create_app(settings), max_requests(settings))


def _serve_workers(settings: Settings) -> None:
    """Several uvicorn worker processes, each building the app (and loading every model) from the
    environment. For hosts where one event loop is the bottleneck (GPU hosts); on a small CPU host
    one process with several inference threads is faster. Each worker drains on SIGTERM with
    uvicorn's own shutdown; the ``shutdown_delay_s`` readiness flip and the backlog hand-over apply
    to single-process serving only."""
    for name, value in settings.model_dump(mode="json").items():
        os.environ[f"VISIONGATE_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    uvicorn.run("visiongate.service.server:worker_app", factory=True, workers=settings.http_workers,
                **_uvicorn_options(settings))
