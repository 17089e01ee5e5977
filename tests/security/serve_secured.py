"""``visiongate serve`` with ``install_security`` applied, for the tests until ``create_app`` calls it:
the real ``service.server.serve`` (settings, logging, startup checks, TLS, connection guards, drain),
given an app factory that adds the security layer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

import service.server
from service.app import create_app
from service.security import install_security
from service.settings import Settings


def create_secured_app(settings: Settings, backend: Any = None) -> FastAPI:
    app = create_app(settings, backend)
    if not hasattr(app.state, "gate"):  # create_app does not install it (yet)
        install_security(app, settings)
    return app


if __name__ == "__main__":
    service.server.create_app = create_secured_app  # type: ignore[assignment]
    service.server.serve(Settings())
