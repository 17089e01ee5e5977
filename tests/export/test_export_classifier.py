"""`visiongate export efficientnet_lite0`: real ImageNet weights, ONNX, a parity proof, an atomic version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visiongate.service.model_config import config_to_dict, parse_pbtxt
from visiongate.service.repository import read_model

pytestmark = pytest.mark.export


def export(repo: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "visiongate.service.cli", "export", "--no-progress", "--repository",
                           str(repo), *names], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def fresh_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    done = export(repo, "efficientnet_lite0")
    assert done.returncode == 0, done.stderr
    return repo


def test_export_writes_the_triton_layout(fresh_repo: Path) -> None:
    model = fresh_repo / "efficientnet_lite0"
    assert sorted(p.name for p in model.iterdir()) == ["1", "config.pbtxt", "labels.txt"]
    assert sorted(p.name for p in (model / "1").iterdir()) == ["model.onnx", "parity.json"]
    labels = (model / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[281] == "tabby" and labels[967] == "espresso"


def test_config_is_triton_valid_and_carries_the_preprocessing(fresh_repo: Path) -> None:
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    text = (fresh_repo / "efficientnet_lite0" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size >= 1
    assert config.input[0].data_type == model_config_pb2.TYPE_UINT8 and list(config.input[0].dims) == [224, 224, 3]
    assert config.output[0].label_filename == "labels.txt"
    assert config.HasField("dynamic_batching")
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["task"] == "classify" and params["resize"] == "center_crop" and params["resize_size"] == "256"
    assert params["mean"] == "0.485,0.456,0.406"
    spec = read_model(fresh_repo / "efficientnet_lite0").spec
    assert spec.preprocess.input_size == (224, 224) and spec.versions == (1,)


def test_parity_report_proves_onnx_matches_pytorch_on_real_photos(fresh_repo: Path) -> None:
    report = json.loads((fresh_repo / "efficientnet_lite0" / "1" / "parity.json").read_text())
    assert report["passed"] is True
    assert {"chelsea", "coffee", "astronaut", "rocket"} <= set(report["photos"])
    assert report["metrics"]["top1_agreement"] == 1.0
    assert report["metrics"]["max_abs_logit_diff"] < 1e-3
    assert report["details"]["onnx_top1"]["coffee"] == "espresso"
    assert report["details"]["onnx_top1"]["chelsea"] in {"tabby", "tiger cat", "Egyptian cat"}


def test_exporting_again_adds_version_2_and_keeps_version_1(fresh_repo: Path) -> None:
    done = export(fresh_repo, "efficientnet_lite0")
    assert done.returncode == 0, done.stderr
    config = config_to_dict(parse_pbtxt((fresh_repo / "efficientnet_lite0" / "config.pbtxt").read_text()))
    assert config["name"] == "efficientnet_lite0"
    versions = sorted(p.name for p in (fresh_repo / "efficientnet_lite0").iterdir() if p.name.isdigit())
    assert versions == ["1", "2"]
    # reproducible: the same weights give the same graph
    one, two = ((fresh_repo / "efficientnet_lite0" / v / "model.onnx").read_bytes() for v in ("1", "2"))
    assert one == two


def test_a_killed_export_leaves_no_visible_half_version(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "visiongate.service.cli", "export", "--no-progress", "--repository",
                             str(tmp_path), "efficientnet_lite0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    staged = None
    while time.monotonic() < deadline and proc.poll() is None:
        staged = next(tmp_path.glob(".staging-*/version/model.onnx"), None)
        if staged is not None and staged.stat().st_size > 0:
            break
        time.sleep(0.01)
    assert staged is not None, "the export finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    visible = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert visible == [], f"a killed export left {visible}"
    # the next export cleans the dead one's staging folder and publishes version 1
    done = export(tmp_path, "efficientnet_lite0")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["efficientnet_lite0"]
    assert read_model(tmp_path / "efficientnet_lite0").spec.versions == (1,)
