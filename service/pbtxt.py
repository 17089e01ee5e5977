"""Deprecated: kept so callers written for the old hand-made parser keep working until they move.

``config.pbtxt`` is read and written with Triton's own schema in ``service.model_config``:
``read_config``/``parse_pbtxt`` (text -> ``ModelConfig``), ``to_pbtxt`` (``ModelConfig`` -> text) and
``dump_config`` (a dict in Triton's JSON shape -> text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model_config import ConfigError, config_to_dict, dump_config, parse_pbtxt

PbtxtError = ConfigError


def parse(text: str) -> dict[str, Any]:
    """config.pbtxt text -> a dict in Triton's JSON shape (int64 values as strings, as proto3 JSON)."""
    return config_to_dict(parse_pbtxt(text))


def dump(config: Mapping[str, Any]) -> str:
    """A dict in Triton's JSON shape -> config.pbtxt text."""
    return dump_config(config)
