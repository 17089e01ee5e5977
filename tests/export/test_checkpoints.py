"""Reading users' checkpoints: safetensors and weights-only pickles, wrappers, and errors that say what is wrong."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from visiongate.export.checkpoints import (  # noqa: E402
    CheckpointError,
    compare,
    load_first_fitting,
    load_into,
    normalise_state_dict,
    read_checkpoint,
)
from visiongate.export.sources.sr_nets import ESPCN, SRResNet  # noqa: E402

pytestmark = pytest.mark.export


@pytest.fixture
def espcn() -> ESPCN:
    torch.manual_seed(0)
    return ESPCN(scale=2, features=16).eval()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_safetensors_round_trip(tmp_path, espcn):
    path = tmp_path / "espcn.safetensors"
    safetensors_torch.save_file(espcn.state_dict(), str(path))
    assert _same(read_checkpoint(path), espcn.state_dict())


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 12, "optimizer": {"lr": 0.1}},
    lambda sd: {"model": sd},
    lambda sd: {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}},  # Lightning
    lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},  # torch.compile
], ids=["plain", "state_dict", "model", "ddp_prefix", "lightning_prefix", "compile_prefix"])
def test_pth_wrappers_and_prefixes_are_unwrapped(tmp_path, espcn, wrap):
    path = tmp_path / "espcn.pth"
    torch.save(wrap(espcn.state_dict()), path)
    assert _same(read_checkpoint(path), espcn.state_dict())


def test_ema_weights_win_over_raw_ones():
    raw = {"w": torch.zeros(2)}
    ema = {"w": torch.ones(2)}
    assert torch.equal(normalise_state_dict({"state_dict": raw, "state_dict_ema": ema})["w"], ema["w"])


def test_a_pickle_that_needs_code_is_refused_with_the_reason(tmp_path, espcn):
    path = tmp_path / "whole_module.pth"
    torch.save(espcn, path)  # pickles the class: loading it would import and run code
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "refused for safety" in message and "weights_only=True" in message
    assert "ESPCN" in message  # names the class the pickle wanted
    assert "\x1b[" not in message  # torch's terminal colour codes are stripped


def test_files_that_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        read_checkpoint(junk)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, empty)
    with pytest.raises(CheckpointError, match="no tensors found"):
        read_checkpoint(empty)


def test_mismatch_names_missing_unexpected_and_misshaped_keys():
    torch.manual_seed(0)
    state = ESPCN(scale=3, features=16).state_dict()  # last conv: 27 outputs, the x2 model wants 12
    del state["body.0.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_into(ESPCN(scale=2, features=16), state, what="ESPCN x2")
    message = str(info.value)
    assert "does not fit ESPCN x2" in message
    assert "1 missing from the checkpoint: body.0.bias" in message
    assert "1 unexpected (not in the model): extra.weight" in message
    assert "body.4.weight: checkpoint [27, 8, 3, 3] vs model [12, 8, 3, 3]" in message


def test_batchnorm_step_counters_do_not_matter():
    # FrozenBatchNorm2d checkpoints (torchvision detection) have no num_batches_tracked
    torch.manual_seed(0)
    source = SRResNet(scale=2, blocks=1, channels=8)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert compare(SRResNet(scale=2, blocks=1, channels=8), state).fits
    loaded = load_into(SRResNet(scale=2, blocks=1, channels=8), state)
    assert not loaded.training
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), source.eval()(x))


def test_first_fitting_layout_is_chosen_and_the_closest_is_reported():
    torch.manual_seed(0)
    state = ESPCN(scale=4, features=16).state_dict()
    layout, module = load_first_fitting(
        [("x2", lambda: ESPCN(2, 16)), ("x4", lambda: ESPCN(4, 16))], state, what="ESPCN")
    assert layout == "x4" and module.scale == 4
    with pytest.raises(CheckpointError, match=r"closest is the x3 layout: 2 shape mismatches.*also tried the x2"):
        load_first_fitting([("x2", lambda: SRResNet(2, 1, 8)), ("x3", lambda: ESPCN(3, 16))], state, what="ESPCN")
