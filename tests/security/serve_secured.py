"""``visiongate serve`` with ``install_security`` applied, for the tests until ``create_app`` calls it:
the same settings, logging, startup checks, TLS options and draining server as ``service.server.serve``."""

from __future__ import annotations

import uvicorn

from service.app import create_app
from service.request_log import configure_logging
from service.security import install_security
from service.server import DrainingServer, _uvicorn_options, check_can_serve
from service.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    check_can_serve(settings)
    app = create_app(settings)
    if not hasattr(app.state, "gate"):  # create_app does not install it (yet)
        install_security(app, settings)
    config = uvicorn.Config(app, **_uvicorn_options(settings))  # type: ignore[arg-type]
    DrainingServer(config, app, settings.shutdown_delay_s).run()


if __name__ == "__main__":
    main()
