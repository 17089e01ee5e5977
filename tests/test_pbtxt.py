"""config.pbtxt is read and written with Triton's own schema; the corpus below proves round trips and
agreement with tritonclient's copy of the schema, and that unknown fields are refused as Triton does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visiongate.service.model_config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    dump_config,
    parse_pbtxt,
    to_pbtxt,
    triton_config_json,
)
from visiongate.service.repository import scan

HERE = Path(__file__).resolve().parent

TRITON_STYLE = """
# written by hand, the way Triton's docs show it
name: "resnet"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "image"
    data_type: TYPE_UINT8
    format: FORMAT_NHWC
    dims: [ 224, 224, 3 ]
  }
]
output [ { name: "logits", data_type: TYPE_FP32, dims: [ 1000 ], label_filename: "labels.txt" } ]
dynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [ 4, 8 ] }
instance_group [ { kind: KIND_CPU, count: 2 } ]
version_policy: { latest: { num_versions: 2 } }
metric_tags { key: "équipe" value: "vision — 東京" }
cc_model_filenames [ { key: "7.5" value: "a.plan" }, { key: "8.0" value: "b.plan" } ]
parameters { key: "task" value { string_value: "classify" } }
parameters: { key: "mean" value: { string_value: "0.5,0.5,0.5" } }
parameters { key: "note" value { string_value: 'say "hi" \\\\ bye' } }
parameters { key: "libellé" value { string_value: "chat tigré 🐈 — ünïcödé" } }
"""

#: (text, what the refusal must name)
REFUSED = [
    ('name: "m"\nmax_batch_sise: 4\n', "max_batch_sise"),
    ('name: "m"\ninput { name: "x" data_type: TYPE_FLOAT32 dims: [3] }\n', "TYPE_FLOAT32"),
    ('name: "m"\nparameters { key: "task" value { string: "classify" } }\n', "string"),
    ('name: "m"\ninput { name: "x" ', '2:15 : Expected "}"'),  # line:column of the break
    ('name: "m"\noutput { name: "y" label_file: "labels.txt" }\n', "label_file"),
]


def test_reads_the_shapes_triton_configs_come_in() -> None:
    config = parse_pbtxt(TRITON_STYLE)
    assert config.max_batch_size == 8
    assert list(config.input[0].dims) == [224, 224, 3]
    assert config.output[0].label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.version_policy.latest.num_versions == 2
    assert config.metric_tags["équipe"] == "vision — 東京"
    assert dict(config.cc_model_filenames) == {"7.5": "a.plan", "8.0": "b.plan"}
    assert config.parameters["note"].string_value == 'say "hi" \\ bye'
    assert config.parameters["libellé"].string_value == "chat tigré 🐈 — ünïcödé"


def test_write_then_read_is_the_identity_with_non_ascii_maps_and_repeated_fields() -> None:
    config = parse_pbtxt(TRITON_STYLE)
    text = to_pbtxt(config)
    assert "chat tigré 🐈" in text  # written as UTF-8, not escaped
    assert "dims: [224, 224, 3]" in text
    again = parse_pbtxt(text)
    assert again == config
    assert to_pbtxt(again) == text


def test_tritonclients_copy_of_the_schema_reads_our_text_the_same() -> None:
    tc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    text_format = pytest.importorskip("google.protobuf.text_format")
    ours = parse_pbtxt(TRITON_STYLE)
    theirs = text_format.Parse(to_pbtxt(ours), tc.ModelConfig())
    assert theirs.SerializeToString(deterministic=True) == ours.SerializeToString(deterministic=True)
    assert theirs.parameters["libellé"].string_value == "chat tigré 🐈 — ünïcödé"


@pytest.mark.parametrize(("text", "named"), REFUSED)
def test_unknown_fields_and_broken_text_are_refused_naming_model_file_and_field(text: str,
                                                                               named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_pbtxt(text, model="m", path="m/config.pbtxt")
    message = str(caught.value)
    assert "model 'm'" in message and "m/config.pbtxt" in message and named in message
    tc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    text_format = pytest.importorskip("google.protobuf.text_format")
    with pytest.raises(text_format.ParseError):  # Triton's schema refuses the same text
        text_format.Parse(text, tc.ModelConfig())


def test_dicts_in_tritons_json_shape_round_trip_and_the_old_dump_still_works() -> None:
    as_dict = {"name": "m", "max_batch_size": 4,
               "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": ["-1", -1, 3]}],
               "parameters": {"libellé": {"string_value": "ünï"}}}
    text = dump_config(as_dict)
    assert parse_pbtxt(text).parameters["libellé"].string_value == "ünï"
    assert dump_config(as_dict) == text
    assert config_to_dict(parse_pbtxt(text))["input"][0]["dims"] == ["-1", "-1", "3"]  # proto3 JSON: int64 as strings
    with pytest.raises(ConfigError, match="max_batch_sise"):
        config_from_dict({"name": "m", "max_batch_sise": 4})


def test_full_config_json_is_what_a_real_tritonserver_returns() -> None:
    # recorded from tritonserver 2.51 (nvidia-pytriton 0.7.0) serving the exported yolov3_tiny
    # through its python backend (tests/backends/triton_server.py rewrites the config that way)
    recorded = HERE / "test_repository_data" / "tritonserver_2.51_yolov3_tiny_config.json"
    real = json.loads(recorded.read_text())
    config = config_from_dict({k: v for k, v in real.items()
                               if k not in ("optimization", "instance_group", "dynamic_batching")})
    config.dynamic_batching.max_queue_delay_microseconds = 500
    ours = triton_config_json(config)
    assert ours == real
    assert list(ours) == list(real)  # same field order


def test_every_config_in_the_repository_parses_with_tritons_schema(repository: Path) -> None:
    models = scan(repository)
    assert models, "the repository has no models"
    for model_dir in models:
        if (model_dir / "config.pbtxt").is_file():
            parse_pbtxt((model_dir / "config.pbtxt").read_text(encoding="utf-8"), model=model_dir.name)
