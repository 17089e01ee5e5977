"""Proofs that prove something, and re-exports that keep what a person edited.

- ``--images DIR``: the user's photos are the proof photos;
- a detector that finds nothing on the photos is refused unless ``--allow-empty-detections``;
- a super-resolution model worse than bicubic is refused unless ``--force``;
- the summary line shows the figure of the check that decided (fp16: fp16 vs float32);
- a re-export keeps hand edits of config.pbtxt and gives changed labels to the new version only.
"""

from __future__ import annotations

import json
import logging

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")
from PIL import Image  # noqa: E402

from visiongate.export.photos import photo  # noqa: E402
from visiongate.export.reexport import ConfigConflict, merge_config  # noqa: E402
from visiongate.export.sources.sr_nets import ESPCN  # noqa: E402
from visiongate.service.cli import main  # noqa: E402
from visiongate.service.model_config import config_to_dict, dump_config, parse_pbtxt  # noqa: E402
from visiongate.service.proof_report import read_proof, summarise  # noqa: E402
from visiongate.service.repository import read_model  # noqa: E402

pytestmark = [
    pytest.mark.export,
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
]


def export(tmp_path, *args: str) -> int:
    return main(["export", "--repository", str(tmp_path / "repo"), "--no-progress", *args])


@pytest.fixture
def classifier_checkpoint(tmp_path):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_file(torchvision.models.mobilenet_v3_small(num_classes=3).state_dict(), str(path))
    return path


def test_users_photos_are_the_proof(tmp_path, classifier_checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo("coffee")).save(photos / "b_mug.png")
    Image.fromarray(photo("rocket")).save(photos / "a_launch.jpg")
    (photos / "notes.txt").write_text("not an image")
    assert export(tmp_path, "--arch", "mobilenet_v3_small", "--checkpoint", str(classifier_checkpoint),
                  "--images", str(photos)) == 0
    report = json.loads((tmp_path / "repo" / "mobilenet_v3_small" / "1" / "parity.json").read_text())
    assert report["photos"] == ["a_launch.jpg", "b_mug.png"]


def test_images_dir_without_images_is_refused(tmp_path, classifier_checkpoint, capsys):
    (tmp_path / "empty").mkdir()
    assert export(tmp_path, "--arch", "mobilenet_v3_small", "--checkpoint", str(classifier_checkpoint),
                  "--images", str(tmp_path / "empty")) == 1
    assert "no image files" in capsys.readouterr().err


def test_a_detector_that_finds_nothing_is_refused_unless_allowed(tmp_path, capsys):
    from visiongate.export.sources.torchvision_detection import build_torchvision_detector

    torch.manual_seed(0)
    path = tmp_path / "ssd.safetensors"  # random weights: every score is ~1/91, far below the threshold
    safetensors_torch.save_file(build_torchvision_detector("ssdlite320_mobilenet_v3_large", 91).state_dict(),
                                str(path))
    args = ("--arch", "ssdlite320_mobilenet_v3_large", "--checkpoint", str(path), "--name", "empty")
    assert export(tmp_path, *args) == 1
    err = capsys.readouterr().err
    assert "the proof compared nothing" in err and "--allow-empty-detections" in err
    assert not (tmp_path / "repo" / "empty").exists()
    assert export(tmp_path, *args, "--allow-empty-detections") == 0
    proof = read_proof(tmp_path / "repo" / "empty" / "1")
    assert proof is not None and proof.passed and "allowed by --allow-empty-detections" in proof.notes[0]


def test_super_resolution_worse_than_bicubic_is_refused_unless_forced(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "espcn.safetensors"
    safetensors_torch.save_file(ESPCN(2, 8).state_dict(), str(path))  # random: far worse than bicubic
    assert export(tmp_path, "--arch", "espcn", "--checkpoint", str(path)) == 1
    err = capsys.readouterr().err
    assert "dB worse than bicubic" in err and "--force publishes it anyway" in err
    assert not (tmp_path / "repo" / "espcn").exists()
    assert export(tmp_path, "--arch", "espcn", "--checkpoint", str(path), "--force") == 0
    report = json.loads((tmp_path / "repo" / "espcn" / "1" / "parity.json").read_text())
    assert report["metrics"]["mean_gain_over_bicubic_db"] < 0
    assert "published with --force" in report["details"]["worse_than_bicubic"]


def test_fp16_summary_shows_the_fp16_check(tmp_path, classifier_checkpoint, capsys):
    pytest.importorskip("onnxconverter_common")
    assert export(tmp_path, "--arch", "mobilenet_v3_small", "--checkpoint", str(classifier_checkpoint),
                  "--fp16") == 0
    out = capsys.readouterr().out
    assert "parity onnx fp16 vs float32 ONNX" in out
    assert "top1_agreement_clear_margin" in out and "max_abs_logit_diff" not in out
    proof = read_proof(tmp_path / "repo" / "mobilenet_v3_small" / "1")
    assert proof is not None and proof.checked == "onnx fp16 vs float32 ONNX"
    assert "logits_max_rel_diff" in proof.metrics


def test_reexport_keeps_hand_edits_and_versions_keep_their_labels(tmp_path, classifier_checkpoint, caplog):
    caplog.set_level(logging.INFO, logger="visiongate.export")
    (tmp_path / "v1.txt").write_text("bolt\nnut\nwasher\n")
    args = ("--arch", "mobilenet_v3_small", "--checkpoint", str(classifier_checkpoint), "--name", "parts")
    assert export(tmp_path, *args, "--labels", str(tmp_path / "v1.txt")) == 0
    model_dir = tmp_path / "repo" / "parts"
    config = config_to_dict(parse_pbtxt((model_dir / "config.pbtxt").read_text()))
    config["version_policy"] = {"all": {}}
    config["instance_group"] = [{"count": 2, "kind": "KIND_CPU"}]
    config["max_batch_size"] = 16
    config["dynamic_batching"] = {"max_queue_delay_microseconds": 2000}
    config["parameters"]["mean"] = {"string_value": "0.5,0.5,0.5"}  # cannot take effect: the graph normalises
    config["parameters"]["owner"] = {"string_value": "vision-team"}
    (model_dir / "config.pbtxt").write_text(dump_config(config))

    (tmp_path / "v2.txt").write_text("bolt\nwasher\nnut\n")  # reordered: version 1 must keep its order
    assert export(tmp_path, *args, "--labels", str(tmp_path / "v2.txt")) == 0
    after = config_to_dict(parse_pbtxt((model_dir / "config.pbtxt").read_text()))
    assert after["version_policy"] == {"all": {}}
    assert after["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    assert int(after["max_batch_size"]) == 16
    assert after["parameters"]["owner"]["string_value"] == "vision-team"
    assert int(after["dynamic_batching"]["max_queue_delay_microseconds"]) == 2000
    assert after["parameters"]["mean"]["string_value"] == "0.485,0.456,0.406"  # what the new graph applies
    assert "replaced parameters.mean: '0.5,0.5,0.5' -> '0.485,0.456,0.406'" in caplog.text
    assert "kept hand-edited version_policy" in caplog.text
    assert "dims" not in caplog.text  # nothing about the graph changed
    assert (model_dir / "labels.txt").read_text().split() == ["bolt", "nut", "washer"]
    assert (model_dir / "2" / "labels.txt").read_text().split() == ["bolt", "washer", "nut"]
    assert not (model_dir / "1" / "labels.txt").exists()
    assert read_model(model_dir).spec.versions == (1, 2)


def test_a_hand_set_backend_with_a_new_platform_is_refused_by_name():
    new = {"name": "m", "platform": "tensorrt_plan", "input": [], "output": []}
    with pytest.raises(ConfigConflict, match="backend: 'onnxruntime'"):
        merge_config(new, {"name": "m", "platform": "onnxruntime_onnx", "backend": "onnxruntime"})


def test_the_proof_reader_reads_both_shapes():
    base = {"task": "classify", "passed": True, "metrics": {"max_abs_logit_diff": 1e-6, "top1_agreement": 1.0}}
    plain = summarise(base)
    assert (plain.passed, plain.checked, plain.metrics["top1_agreement"]) == (True, "ONNX vs PyTorch", 1.0)
    variant = summarise({"variant": {"format": "tensorrt", "precision": "fp16", "passed": True,
                                     "metrics": {"logits_max_rel_diff": 0.004}},
                         "float32_onnx_vs_pytorch": {**base, "passed": False}})
    assert variant.checked == "tensorrt fp16 vs float32 ONNX"
    assert not variant.passed  # the float32 step failed: the chain of proof is broken
    assert variant.as_dict()["logits_max_rel_diff"] == 0.004
    with pytest.raises(ValueError, match="not a visiongate parity report"):
        summarise({"hello": 1})
