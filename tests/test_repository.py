"""The repository is the single source of truth: configs are validated at load, drop-in ONNX graphs are
completed from the graph and its metadata, configs are checked against their graphs, and every
problem is a ConfigError naming the model and the field."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visiongate.service.autocomplete import PRETRAINED_CFG_KEY, read_graph
from visiongate.service.model_config import (
    ConfigError,
    ModelConfig,
    config_to_dict,
    read_config,
    to_pbtxt,
    triton_config_json,
)
from visiongate.service.protocol import model_config_pb2
from visiongate.service.repository import ModelSpec, read_model, scan, spec_from_config

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

EXPORTED = ("efficientnet_lite0", "yolov3_tiny", "waifu2x_x2")
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# ---- tiny real graphs, built with onnx's helper API ---------------------------------------------------

def _graph(path: Path, in_shape: Sequence[int | str], out_shape: Sequence[int | str], *,
           in_type: int = TensorProto.FLOAT, in_name: str = "images", out_name: str = "output",
           metadata: dict[str, str] | None = None) -> Path:
    """``images`` -> global average pool -> flatten -> matmul -> reshape to ``out_shape`` (its first
    axis follows the input's). NCHW float or uint8 (cast first)."""
    nodes, inits = [], []
    src = in_name
    if in_type == TensorProto.UINT8:
        nodes.append(helper.make_node("Cast", [src], ["xf"], to=TensorProto.FLOAT))
        src = "xf"
    channel_last = in_shape[-1] in (1, 3) and in_shape[1] not in (1, 3)
    if channel_last:
        nodes.append(helper.make_node("Transpose", [src], ["xt"], perm=[0, 3, 1, 2]))
        src = "xt"
    channels = int(in_shape[-1] if channel_last else in_shape[1])
    tail = [int(d) for d in out_shape[1:]]
    width = int(np.prod(tail))
    inits.append(numpy_helper.from_array(np.ones((channels, width), np.float32), "w"))
    inits.append(numpy_helper.from_array(np.array([0, *tail], np.int64), "shape"))
    nodes += [helper.make_node("GlobalAveragePool", [src], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("MatMul", ["flat", "w"], ["mm"]),
              helper.make_node("Reshape", ["mm", "shape"], [out_name])]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info(in_name, in_type, list(in_shape))],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_shape))],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _model(repo: Path, name: str, config: str | None = None, version: int = 1, **graph: object) -> Path:
    model_dir = repo / name
    _graph(model_dir / str(version) / "model.onnx", **graph)  # type: ignore[arg-type]
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
    return model_dir


def _params(**values: str) -> str:
    return "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
                   for k, v in values.items())


# ---- repositories exported by today's code ------------------------------------------------------------

@pytest.fixture
def exported(repository: Path, tmp_path: Path) -> Path:
    for name in EXPORTED:
        shutil.copytree(repository / name, tmp_path / name, symlinks=True)
    return tmp_path


def test_exported_repositories_load_unchanged_with_nothing_to_report(exported: Path) -> None:
    specs = {p.name: read_model(p).spec for p in scan(exported)}
    assert sorted(specs) == sorted(EXPORTED)
    for spec in specs.values():
        assert spec.warnings == ()
        assert spec.preprocess.dtype == "uint8" and spec.preprocess.layout == "NHWC"
        assert not spec.preprocess.normalize  # the exported graphs normalise themselves
    lite = specs["efficientnet_lite0"].preprocess
    assert (lite.input_size, lite.resize, lite.resize_size) == ((224, 224), "center_crop", 256)
    assert len(specs["efficientnet_lite0"].labels or ()) == 1000
    yolo = specs["yolov3_tiny"]
    assert (yolo.preprocess.resize, yolo.preprocess.pad_value, yolo.head) == ("letterbox", 127, "visiongate")
    # today's exports state the head; the earlier round's left it to be recognised from the layout
    assert yolo.inferred in ({}, {"head": "layout"})
    sr = specs["waifu2x_x2"]
    assert sr.preprocess.input_size is None
    assert sr.int_param("scale", 0) == 2 and sr.int_param("tile_size", 0) == 256


def test_the_triton_json_path_builds_the_same_spec(exported: Path) -> None:
    for name in EXPORTED:
        local = read_model(exported / name).spec
        assert local.config is not None
        remote = spec_from_config(triton_config_json(local.config), labels=local.labels,
                                  versions=local.versions)
        assert remote.preprocess == local.preprocess and remote.parameters == local.parameters
        assert (remote.task, remote.head, remote.inputs, remote.outputs) == (
            local.task, local.head, local.inputs, local.outputs)


# ---- validation of every value --------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("resize", "fit", "stretch | center_crop | letterbox | none"),
    ("mean", "0.5,0.5", "3 comma-separated numbers"),
    ("std", "0.2,0,0.2", "3 comma-separated positive numbers"),
    ("letterbox_pad", "300", "an integer >= 0 <= 255"),
    ("score_threshold", "1.5", "a number >= 0.0 <= 1.0"),
    ("head", "yolov99", "visiongate | torchvision | yolov5 | yolov8 | end2end | detr"),
    ("interpolation", "cubic", "nearest | bilinear | bicubic"),
    ("normalization", "gateway", "in_graph"),
    ("task", "caption", "classify | detect | super_resolve | segment"),
    ("max_detections", "0", "an integer >= 1"),
])
def test_a_bad_value_is_a_load_error_naming_the_model_the_field_and_what_is_allowed(
        exported: Path, key: str, value: str, allowed: str) -> None:
    path = exported / "yolov3_tiny" / "config.pbtxt"
    text = path.read_text(encoding="utf-8")
    marker = f'key: "{key}" value {{ string_value: '
    if marker in text:
        start = text.index(marker) + len(marker)
        end = text.index("}", start)
        text = text[:start] + f'"{value}" ' + text[end:]
    else:
        text += _params(**{key: value})
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_model(exported / "yolov3_tiny")
    message = str(caught.value)
    assert "model 'yolov3_tiny'" in message and key in message and allowed in message, message


def test_unknown_parameters_are_reported_not_fatal(exported: Path) -> None:
    path = exported / "efficientnet_lite0" / "config.pbtxt"
    path.write_text(path.read_text() + _params(resise="center_crop", letterbox_pad="0",
                                               EXECUTION_ENV_PATH="/venv"), encoding="utf-8")
    spec = read_model(exported / "efficientnet_lite0").spec
    assert any("parameters.resise is not a visiongate parameter" in w for w in spec.warnings)
    assert any("parameters.letterbox_pad is not used" in w for w in spec.warnings)
    assert not any("EXECUTION_ENV_PATH" in w for w in spec.warnings)  # a Triton backend's own parameter


def test_a_config_that_does_not_match_its_graph_is_a_load_error(exported: Path) -> None:
    path = exported / "efficientnet_lite0" / "config.pbtxt"
    good = path.read_text()

    def float_input(c: ModelConfig) -> None:
        c.input[0].data_type = model_config_pb2.TYPE_FP32
        # a float input also needs its normalisation said; keep the graph error first
        c.parameters["normalization"].string_value = "none"
        c.parameters["mean"].string_value = "0,0,0"
        c.parameters["std"].string_value = "1,1,1"

    def dims(tensor: Any, values: list[int]) -> None:
        del tensor.dims[:]
        tensor.dims.extend(values)

    def input_dims(c: ModelConfig) -> None:
        dims(c.input[0], [256, 256, 3])
        if "input_size" in c.parameters:  # today's exports also state the size as a parameter
            del c.parameters["input_size"]

    edits: list[tuple[Callable[[ModelConfig], None], str]] = [
        (lambda c: setattr(c.input[0], "name", "pixels"), "input 'pixels' is not in the graph"),
        (lambda c: dims(c.output[0], [1001]), "output 'logits': dims [1001]"),
        (float_input, "TYPE_FP32 in the config but TYPE_UINT8 in the graph"),
        (input_dims, "dims [256, 256, 3]"),
    ]
    for edit, named in edits:  # edited through Triton's schema, whatever layout the exporter wrote
        path.write_text(good)
        config = read_config(path, "efficientnet_lite0")
        edit(config)
        path.write_text(to_pbtxt(config))
        with pytest.raises(ConfigError, match="does not match its graph") as caught:
            read_model(exported / "efficientnet_lite0")
        assert named in str(caught.value)
    path.write_text(good)
    assert read_model(exported / "efficientnet_lite0").spec.task == "classify"


# ---- drop-in ONNX: Triton-style auto-complete ----------------------------------------------------------

def test_a_bare_classifier_without_metadata_is_refused_with_a_pasteable_snippet(tmp_path: Path) -> None:
    _model(tmp_path, "mine", in_shape=["N", 3, 32, 32], out_shape=["N", 10])
    assert [p.name for p in scan(tmp_path)] == ["mine"]
    with pytest.raises(ConfigError) as caught:
        read_model(tmp_path / "mine")
    message = str(caught.value)
    assert "mean/std" in message and "does not guess" in message
    snippet = message.split("\n", 1)[1]
    (tmp_path / "mine" / "config.pbtxt").write_text(snippet, encoding="utf-8")  # paste it as it is
    spec = read_model(tmp_path / "mine").spec
    assert spec.task == "classify" and spec.preprocess.normalize
    assert spec.max_batch_size == 4
    assert spec.inferred["input"] == "graph" and spec.inferred["task"] == "layout"


def test_our_pretrained_cfg_metadata_makes_a_graph_servable_on_its_own(tmp_path: Path) -> None:
    cfg = {"task": "classify", "input_size": [3, 32, 32], "interpolation": "bicubic", "crop_pct": 0.875,
           "crop_mode": "center", **IMAGENET, "labels": [f"clâsse {i}" for i in range(10)]}
    _model(tmp_path, "timmish", in_shape=["batch", 3, 32, 32], out_shape=["batch", 10],
           metadata={PRETRAINED_CFG_KEY: json.dumps(cfg)})
    spec = read_model(tmp_path / "timmish").spec
    prep = spec.preprocess
    assert (prep.resize, prep.resize_size, prep.interpolation) == ("center_crop", 36, "bicubic")
    assert prep.normalize and prep.mean == tuple(IMAGENET["mean"]) and prep.layout == "NCHW"
    assert spec.labels_for(1) == tuple(f"clâsse {i}" for i in range(10))
    assert spec.inferred["mean"] == f"onnx-metadata:{PRETRAINED_CFG_KEY}"
    assert spec.inferred["labels"] == f"onnx-metadata:{PRETRAINED_CFG_KEY}"
    assert spec.config is not None
    shown = triton_config_json(spec.config)
    assert shown["parameters"]["crop_pct"] == {"string_value": "0.875"}  # what was inferred is visible
    assert shown["input"][0]["dims"] == [3, 32, 32] and shown["max_batch_size"] == 4


ULTRALYTICS_META = {"author": "Ultralytics", "task": "detect", "stride": "32", "imgsz": "[64, 64]",
                    "names": "{0: 'personne', 1: 'vélo'}", "batch": "1"}


def test_an_ultralytics_detector_is_served_from_its_metadata_and_layout(tmp_path: Path) -> None:
    _model(tmp_path, "yolo", in_shape=[1, 3, 64, 64], out_shape=[1, 6, 84], metadata=ULTRALYTICS_META)
    spec = read_model(tmp_path / "yolo").spec
    assert (spec.task, spec.head) == ("detect", "yolov8")
    prep = spec.preprocess
    assert (prep.resize, prep.pad_value, prep.letterbox_center) == ("letterbox", 114, True)
    assert not prep.normalize
    assert prep.pixel_scale == pytest.approx(1 / 255) and prep.dtype == "float32"
    assert spec.labels == ("personne", "vélo")
    # a fixed batch axis of 1: no batching declared, the dims carry the axis
    assert spec.max_batch_size == 0 and spec.input.dims == (1, 3, 64, 64)
    assert spec.batch_axis and spec.images_per_call == 1
    assert spec.inferred["task"] == spec.inferred["head"] == "onnx-metadata:ultralytics"


def test_yolo_layouts_without_metadata_are_recognised(tmp_path: Path) -> None:
    _model(tmp_path, "v8", in_shape=["N", 3, 64, 64], out_shape=["N", 6, 84])
    _model(tmp_path, "v5", in_shape=["N", 3, 64, 64], out_shape=["N", 84, 7])
    v8, v5 = read_model(tmp_path / "v8").spec, read_model(tmp_path / "v5").spec
    assert (v8.head, v5.head) == ("yolov8", "yolov5")
    assert v8.preprocess.resize == "letterbox" and v8.inferred["resize"] == "layout"


def test_a_graph_without_batch_axis_serves_with_max_batch_size_0(tmp_path: Path) -> None:
    _model(tmp_path, "single", in_shape=[3, 32, 32], out_shape=[10],
           config=_params(task="classify", normalization="none", resize="stretch"))
    # (the tiny graph only has to load: what is checked is the config completed from its signature)
    spec = read_model(tmp_path / "single").spec
    assert spec.max_batch_size == 0 and spec.input.dims == (3, 32, 32)
    assert not spec.batch_axis and spec.images_per_call == 1


def test_a_baked_mean_edit_is_refused(tmp_path: Path) -> None:
    meta = {PRETRAINED_CFG_KEY: json.dumps({"task": "classify", "normalization": "in_graph", **IMAGENET})}
    model_dir = _model(tmp_path, "baked", in_shape=["N", 32, 32, 3], out_shape=["N", 10],
                       in_type=TensorProto.UINT8, metadata=meta)
    assert read_model(model_dir).spec.preprocess.normalize is False
    (model_dir / "config.pbtxt").write_text(_params(mean="0.5,0.5,0.5"), encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot take effect"):
        read_model(model_dir)


def test_a_float_input_told_to_skip_normalisation_refuses_a_mean(tmp_path: Path) -> None:
    model_dir = _model(tmp_path, "m", in_shape=["N", 3, 32, 32], out_shape=["N", 10],
                       config=_params(task="classify", normalization="none", mean="0.5,0.5,0.5"))
    with pytest.raises(ConfigError, match="would be ignored"):
        read_model(model_dir)


def test_a_graph_nobody_recognises_says_which_parameter_to_add(tmp_path: Path) -> None:
    _model(tmp_path, "odd", in_shape=["N", 3, 32, 32], out_shape=["N", 2, 3, 4])
    with pytest.raises(ConfigError, match=re.escape('parameters { key: "task"')):
        read_model(tmp_path / "odd")


# ---- labels per version ----------------------------------------------------------------------------------

def test_each_version_keeps_the_labels_it_was_exported_with(tmp_path: Path) -> None:
    config = ('platform: "onnxruntime_onnx"\nmax_batch_size: 4\nversion_policy { all {} }\n'
              'input { name: "images" data_type: TYPE_FP32 dims: [3, 32, 32] }\n'
              'output { name: "output" data_type: TYPE_FP32 dims: [3] label_filename: "labels.txt" }\n'
              + _params(task="classify", **{k: ",".join(map(str, v)) for k, v in IMAGENET.items()}))
    model_dir = _model(tmp_path, "parts", config, version=1, in_shape=["N", 3, 32, 32], out_shape=["N", 3])
    _graph(model_dir / "2" / "model.onnx", in_shape=["N", 3, 32, 32], out_shape=["N", 3])
    (model_dir / "labels.txt").write_text("washer\nnut\nbolt\n", encoding="utf-8")
    (model_dir / "2" / "labels.txt").write_text("nut\nwasher\nbolt\n", encoding="utf-8")
    spec: ModelSpec = read_model(model_dir).spec
    assert spec.versions == (1, 2)
    assert spec.labels_for(1) == ("washer", "nut", "bolt")
    assert spec.labels_for(2) == ("nut", "washer", "bolt") == spec.labels


def test_a_model_folder_name_must_equal_the_config_name(exported: Path) -> None:
    path = exported / "waifu2x_x2" / "config.pbtxt"
    path.write_text(path.read_text().replace('name: "waifu2x_x2"', 'name: "other"'))
    with pytest.raises(ConfigError, match="directory name"):
        read_model(exported / "waifu2x_x2")


def test_graph_reading_is_onnxruntime_only(tmp_path: Path) -> None:
    path = _graph(tmp_path / "g.onnx", in_shape=["N", 3, 8, 8], out_shape=["N", 5], metadata={"k": "v"})
    info = read_graph(path)
    assert info.metadata["k"] == "v" and info.inputs[0].data_type == "TYPE_FP32"
    assert info.outputs[0].shape == ("N", 5)
    assert config_to_dict  # imported for the module's public surface
