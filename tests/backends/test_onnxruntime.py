"""The embedded runtime reads the Triton repository as Triton would."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from support import run_model
from visiongate.service.backends.onnxruntime import OnnxRuntimeBackend
from visiongate.service.errors import InvalidArgument, ModelNotFound, ModelNotReady
from visiongate.service.model_config import config_to_dict, dump_config, parse_pbtxt
from visiongate.service.settings import Settings


@pytest.fixture
def two_version_repo(repository: Path, tmp_path: Path) -> Path:
    src = repository / "efficientnet_lite0"
    dst = tmp_path / "lite0"
    dst.mkdir()
    shutil.copy(src / "config.pbtxt", dst)
    shutil.copy(src / "labels.txt", dst)
    newest = max(int(p.name) for p in src.iterdir() if p.name.isdigit())
    for version in ("1", "3"):
        (dst / version).mkdir()
        (dst / version / "model.onnx").symlink_to(src / str(newest) / "model.onnx")
    (dst / ".staging-123-x").mkdir()  # a dead export's leftovers are not a version
    config = config_to_dict(parse_pbtxt((dst / "config.pbtxt").read_text()))
    config["name"] = "lite0"
    (dst / "config.pbtxt").write_text(dump_config(config))
    return tmp_path


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_newest_version_is_served_by_default(two_version_repo: Path) -> None:
    async def go() -> tuple[tuple[int, ...], dict[str, np.ndarray]]:
        backend = OnnxRuntimeBackend(Settings(repository=two_version_repo))
        await backend.start()
        try:
            spec = backend.describe("lite0")
            out = await run_model(backend, "lite0", {"image": np.zeros((3, 224, 224, 3), np.uint8)})
            return spec.versions, out
        finally:
            await backend.close()

    versions, out = run(go())
    assert versions == (3,)
    assert out["logits"].shape == (3, 1000)


def test_version_policy_all_loads_every_version(two_version_repo: Path) -> None:
    cfg_path = two_version_repo / "lite0" / "config.pbtxt"
    config = config_to_dict(parse_pbtxt(cfg_path.read_text()))
    config["version_policy"] = {"all": {}}
    cfg_path.write_text(dump_config(config))

    async def go() -> tuple[int, ...]:
        backend = OnnxRuntimeBackend(Settings(repository=two_version_repo))
        await backend.start()
        try:
            await run_model(backend, "lite0", {"image": np.zeros((1, 224, 224, 3), np.uint8)}, version=1)
            with pytest.raises(ModelNotFound):
                await run_model(backend, "lite0", {"image": np.zeros((1, 224, 224, 3), np.uint8)}, version=2)
            return backend.describe("lite0").versions
        finally:
            await backend.close()

    assert run(go()) == (1, 3)


def test_a_request_bigger_than_max_batch_size_is_split_and_reassembled(repository: Path) -> None:
    async def go() -> np.ndarray:
        backend = OnnxRuntimeBackend(Settings(repository=repository))
        await backend.start()
        try:
            rng = np.random.default_rng(0)
            x = rng.integers(0, 255, (11, 224, 224, 3), dtype=np.uint8)
            whole = (await run_model(backend, "efficientnet_lite0", {"image": x}))["logits"]
            one = (await run_model(backend, "efficientnet_lite0", {"image": x[7:8]}))["logits"]
            assert np.allclose(whole[7], one[0], atol=1e-4)
            return whole
        finally:
            await backend.close()

    assert run(go()).shape == (11, 1000)


def test_wrong_input_names_and_a_broken_model_are_clear(repository: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken"\nplatform: "onnxruntime_onnx"\n')
    shutil.copytree(repository / "efficientnet_lite0", tmp_path / "efficientnet_lite0", symlinks=True)

    async def go() -> dict[str, str]:
        backend = OnnxRuntimeBackend(Settings(repository=tmp_path))
        await backend.start()
        try:
            with pytest.raises(InvalidArgument, match="takes inputs"):
                await run_model(backend, "efficientnet_lite0", {"pixels": np.zeros((1, 224, 224, 3), np.uint8)})
            assert [m.name for m in backend.models()] == ["efficientnet_lite0"]
            assert not backend.ready()  # readiness "all": a broken model keeps the gateway not ready
            with pytest.raises(ModelNotReady, match="UNAVAILABLE"):
                backend.describe("broken")
            return {s.name: s.reason for s in backend.states() if s.state == "UNAVAILABLE"}
        finally:
            await backend.close()

    errors = run(go())
    assert "model.onnx" in errors["broken"]  # one broken model does not take the others down
