"""The Backend protocol, checked the same way on every implementation: the embedded onnxruntime
runtime always, and TritonBackend (gRPC and HTTP) where the tritonserver binary is installed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from support import encode, photo, run_model
from visiongate.service.backends.base import Backend
from visiongate.service.backends.onnxruntime import OnnxRuntimeBackend
from visiongate.service.backends.triton import TritonBackend
from visiongate.service.errors import InvalidArgument, ModelNotFound
from visiongate.service.inference import prepare
from visiongate.service.settings import Settings

MODEL = "efficientnet_lite0"

# tritonclient.http.aio posts a batch as one bytes object; aiohttp's ResourceWarning above 1 MiB
pytestmark = pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")


@pytest.fixture(params=["onnxruntime", pytest.param("triton-grpc", marks=pytest.mark.triton),
                        pytest.param("triton-http", marks=pytest.mark.triton)])
async def backend(request: pytest.FixtureRequest, repository: Path) -> AsyncIterator[Backend]:
    if request.param == "onnxruntime":
        impl: Backend = OnnxRuntimeBackend(Settings(repository=repository))
    else:
        triton = request.getfixturevalue("triton")
        protocol = request.param.removeprefix("triton-")
        impl = TritonBackend(Settings(backend="triton", repository=repository, triton_url=triton.url(protocol),
                                      triton_protocol=protocol))
    await impl.start()
    yield impl
    await impl.close()


def batch(backend: Backend, *names: str) -> np.ndarray:
    """Photos preprocessed for the classifier: uint8 [N, 224, 224, 3]."""
    spec = backend.describe(MODEL)
    settings = Settings()
    return np.stack([prepare(encode(photo(n)), spec, settings).tensor for n in names])


async def test_is_a_backend_and_ready_with_the_classifier(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert backend.ready()
    assert MODEL in {m.name for m in backend.models()}
    spec = backend.describe(MODEL)
    assert spec.task == "classify" and spec.input.dims == (224, 224, 3) and spec.labels is not None
    assert len(spec.labels) == 1000 and spec.labels[281] == "tabby"


async def test_infer_returns_every_output_with_the_batch_axis(backend: Backend) -> None:
    out = await run_model(backend, MODEL, {"image": batch(backend, "chelsea", "coffee")})
    assert set(out) == {"logits"} and out["logits"].shape == (2, 1000) and out["logits"].dtype == np.float32
    assert out["logits"][0].argmax() in (281, 282, 285) and out["logits"][1].argmax() == 967


async def test_a_batch_over_max_batch_size_is_split_and_kept_in_order(backend: Backend) -> None:
    images = batch(backend, "chelsea", "coffee")
    many = np.concatenate([images] * 5)  # 10 > max_batch_size 8
    out = await run_model(backend, MODEL, {"image": many})
    assert out["logits"].shape == (10, 1000)
    assert list(out["logits"].argmax(axis=1) == 967) == [False, True] * 5


async def test_unknown_model_is_not_found(backend: Backend) -> None:
    with pytest.raises(ModelNotFound):
        backend.describe("no_such_model")
    with pytest.raises(ModelNotFound):
        await run_model(backend, "no_such_model", {"image": np.zeros((1, 224, 224, 3), np.uint8)})


async def test_wrong_input_name_is_the_callers_fault(backend: Backend) -> None:
    with pytest.raises(InvalidArgument):
        await run_model(backend, MODEL, {"pixels": np.zeros((1, 224, 224, 3), np.uint8)})
