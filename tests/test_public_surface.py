"""The package's public names are what its __all__ says, and each of them imports."""

from __future__ import annotations

from visiongate import service


def test_everything_in_all_is_importable_and_documented() -> None:
    assert set(service.__all__) == {"__version__", "create_app", "Settings"}
    for name in service.__all__:
        assert getattr(service, name) is not None


def test_create_app_and_settings_are_the_real_ones() -> None:
    from visiongate.service.app import create_app
    from visiongate.service.settings import Settings

    assert service.create_app is create_app and service.Settings is Settings
