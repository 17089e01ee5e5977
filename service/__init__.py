"""visiongate: an inference gateway for computer-vision models."""

__version__ = "0.1.0"

__all__ = ["Settings", "__version__", "create_app"]


def __getattr__(name: str) -> object:
    # Lazy, so that `import service.vision` (batch scoring, export parity) does not pull in FastAPI.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(name)
