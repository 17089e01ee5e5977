"""``visiongate serve`` with ``install_security`` applied, for the tests until ``create_app`` calls it:
the real ``visiongate.service.server.serve`` (settings, logging, startup checks, TLS, connection guards, drain),
given an app factory that adds the security layer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

import visiongate.service.server
from visiongate.service.app import create_app
from visiongate.service.security import install_security
from visiongate.service.settings import Settings


def create_secured_app(settings: Settings, backend: Any = None) -> FastAPI:
    app = create_app(settings, backend)
    if not hasattr(app.state, "gate"):  # create_app does not install it (yet)
        install_security(app, settings)
    return app


if __name__ == "__main__":
    visiongate.service.server.create_app = create_secured_app  # type: ignore[assignment]
    visiongate.service.server.serve(Settings())
