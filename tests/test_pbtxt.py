"""config.pbtxt is read without Triton, and everything we write parses with Triton's own schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import pbtxt
from service.repository import scan

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

TRITON_STYLE = """
# written by hand, the way Triton's docs show it
name: "resnet"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "image"
    data_type: TYPE_UINT8
    dims: [ 224, 224, 3 ]
  }
]
output [ { name: "logits", data_type: TYPE_FP32, dims: [ 1000 ], label_filename: "labels.txt" } ]
dynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [ 4, 8 ] }
instance_group [ { kind: KIND_CPU, count: 2 } ]
version_policy: { latest: { num_versions: 2 } }
parameters { key: "task" value { string_value: "classify" } }
parameters: { key: "mean" value: { string_value: "0.5,0.5,0.5" } }
"""


def triton_parse(text: str) -> object:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_reads_the_shapes_triton_configs_come_in() -> None:
    config = pbtxt.parse(TRITON_STYLE)
    assert config["max_batch_size"] == 8
    assert config["input"][0]["dims"] == [224, 224, 3]
    assert config["output"][0]["label_filename"] == "labels.txt"
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert config["version_policy"] == {"latest": {"num_versions": 2}}
    assert config["parameters"] == {"task": {"string_value": "classify"}, "mean": {"string_value": "0.5,0.5,0.5"}}


def test_what_we_write_reads_back_the_same_and_triton_accepts_it() -> None:
    config = pbtxt.parse(TRITON_STYLE)
    text = pbtxt.dump(config)
    assert pbtxt.parse(text) == config
    parsed = triton_parse(text)
    assert parsed.max_batch_size == 8 and parsed.parameters["mean"].string_value == "0.5,0.5,0.5"


def test_strings_with_quotes_and_backslashes_survive() -> None:
    config = {"name": "m", "parameters": {"note": {"string_value": 'say "hi" \\ bye'}}}
    text = pbtxt.dump(config)
    assert pbtxt.parse(text)["parameters"]["note"]["string_value"] == 'say "hi" \\ bye'
    assert triton_parse(text).parameters["note"].string_value == 'say "hi" \\ bye'


def test_broken_text_is_a_clear_error() -> None:
    with pytest.raises(pbtxt.PbtxtError, match="missing"):
        pbtxt.parse('input { name: "x" ')


def test_every_config_in_the_repository_parses_with_tritons_schema(repository: Path) -> None:
    models = scan(repository)
    assert models, "the repository has no models"
    for model_dir in models:
        triton_parse((model_dir / "config.pbtxt").read_text())
