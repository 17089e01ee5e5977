"""Triton's ``ModelConfig`` in and out: ``config.pbtxt`` text, Triton's JSON shape, and dicts.

Everything is parsed with Triton's own schema (``service/protocol/model_config.proto``, server 2.51):
``text_format`` for ``config.pbtxt``, ``json_format`` for the JSON the Triton backend gets from its
server. A field the schema does not know is refused, as Triton refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from .protocol.model_config_pb2 import ModelConfig, ModelInstanceGroup

__all__ = ["ConfigError", "ModelConfig", "config_from_dict", "config_to_dict", "dump_config", "parse_pbtxt",
           "read_config", "to_pbtxt", "triton_config_json", "triton_filled"]


class ConfigError(ValueError):
    """A model's config (or its graph) is not something the gateway can serve; the message names the
    model, the file or field, and what is allowed."""


def _where(model: str | None, path: Path | str | None) -> str:
    if model and path:
        return f"model {model!r} ({path})"
    if model:
        return f"model {model!r}"
    return str(path) if path else "model config"


def parse_pbtxt(text: str, *, model: str | None = None, path: Path | str | None = None) -> ModelConfig:
    """``config.pbtxt`` text -> ``ModelConfig``; a ConfigError naming the model, file and field."""
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{_where(model, path)}: {exc} (Triton's ModelConfig schema, server 2.51)"
                          ) from None
    return config


def read_config(path: Path, model: str | None = None) -> ModelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{_where(model, path)}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                          ) from None
    return parse_pbtxt(text, model=model, path=path)


def to_pbtxt(config: ModelConfig) -> str:
    """``ModelConfig`` -> ``config.pbtxt`` text (UTF-8 kept as it is, ``dims: [224, 224, 3]``)."""
    return str(text_format.MessageToString(config, as_utf8=True, use_short_repeated_primitives=True))


def config_from_dict(config: Mapping[str, Any], *, model: str | None = None) -> ModelConfig:
    """A dict in Triton's JSON shape (``parameters`` as ``{key: {"string_value": ...}}``, enum names,
    int64 as numbers or strings) -> ``ModelConfig``; unknown fields are a ConfigError."""
    out = ModelConfig()
    try:
        json_format.ParseDict(dict(config), out)
    except json_format.ParseError as exc:
        raise ConfigError(f"{_where(model or str(config.get('name') or ''), None)}: {exc}") from None
    return out


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """``ModelConfig`` -> dict with only the fields that are set (proto3 JSON: int64 as strings)."""
    return dict(json_format.MessageToDict(config, preserving_proto_field_name=True))


def dump_config(config: Mapping[str, Any]) -> str:
    """A config dict (Triton's JSON shape) -> ``config.pbtxt`` text."""
    return to_pbtxt(config_from_dict(config))


# ---- the config as Triton returns it -------------------------------------------------------------

#: file Triton loads from a version folder when ``default_model_filename`` is empty
DEFAULT_FILENAMES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan",
                     "pytorch_libtorch": "model.pt", "tensorflow_savedmodel": "model.savedmodel",
                     "tensorflow_graphdef": "model.graphdef"}
#: the backend Triton runs for a platform
PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt",
                     "pytorch_libtorch": "pytorch", "tensorflow_savedmodel": "tensorflow",
                     "tensorflow_graphdef": "tensorflow"}


def triton_filled(config: ModelConfig, *, kind: str = "KIND_CPU") -> ModelConfig:
    """A copy with the defaults Triton fills in before it returns a config (checked against a real
    tritonserver 2.51): backend from platform, version policy, one instance group, optimization,
    ``preferred_batch_size`` and the default model filename."""
    out = ModelConfig()
    out.CopyFrom(config)
    if out.platform and not out.backend:
        out.backend = PLATFORM_BACKENDS.get(out.platform, "")
    if not out.HasField("version_policy"):
        out.version_policy.latest.num_versions = 1
    if not out.instance_group:
        out.instance_group.add(kind=kind, count=1)
    for i, group in enumerate(out.instance_group):
        if not group.name:
            group.name = f"{out.name}_{i}"
        if group.kind == ModelInstanceGroup.KIND_AUTO:
            group.MergeFrom(ModelInstanceGroup(kind=kind))
        if group.count == 0:
            group.count = 1
    if not out.HasField("optimization"):
        out.optimization.input_pinned_memory.enable = True
        out.optimization.output_pinned_memory.enable = True
    if out.HasField("dynamic_batching") and not out.dynamic_batching.preferred_batch_size \
            and out.max_batch_size > 0:
        out.dynamic_batching.preferred_batch_size.append(out.max_batch_size)
    if not out.default_model_filename:
        out.default_model_filename = DEFAULT_FILENAMES.get(out.platform, "")
    return out


_INT64 = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                    FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64})


# descriptors are typed loosely: protobuf has a C (upb) and a Python FieldDescriptor
def _scalar(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None
        found = enum.values_by_number.get(int(value))
        return found.name if found is not None else int(value)
    if field.type in _INT64:
        return int(value)  # Triton's HTTP JSON writes int64 as numbers, not proto3's strings
    return value


def _repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6.32; ``label`` is deprecated there
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _message_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields: list[Any] = list(message.DESCRIPTOR.fields)
    for field in fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            key_field = field.message_type.fields_by_name["key"]
            out[field.name] = {str(_scalar(key_field, k)): (
                _message_json(v) if value_field.message_type is not None else _scalar(value_field, v))
                for k, v in value.items()}
        elif _repeated(field):
            out[field.name] = [_message_json(v) if field.message_type is not None else _scalar(field, v)
                               for v in value]
        elif field.message_type is not None or field.containing_oneof is not None:
            if message.HasField(field.name):
                out[field.name] = _message_json(value) if field.message_type is not None \
                    else _scalar(field, value)
        else:
            out[field.name] = _scalar(field, value)
    return out


def triton_config_json(config: ModelConfig, *, fill: bool = True, kind: str = "KIND_CPU") -> dict[str, Any]:
    """The config in the JSON shape of Triton's ``GET /v2/models/{m}/config``: every scalar, list and
    map field present (defaults included), sub-messages only when set, enums by name, int64 as
    numbers; with ``fill`` the defaults Triton adds (``triton_filled``) are added first."""
    return _message_json(triton_filled(config, kind=kind) if fill else config)
