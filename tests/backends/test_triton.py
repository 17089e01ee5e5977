"""TritonBackend against a real tritonserver: same answers as the embedded runtime, binary tensors
over gRPC and HTTP, readiness that follows Triton, and one error mapping for everything tritonclient
can raise."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from triton_server import TritonServer
from tritonclient.utils import InferenceServerException

from support import GatewayProcess, free_port, photo, run_model, wait_ready
from visiongate.service.backends.onnxruntime import OnnxRuntimeBackend
from visiongate.service.backends.triton import (
    GRPC_STATUS,
    HTTP_STATUS,
    TritonBackend,
    error_class,
    parse_classification,
    triton_errors,
)
from visiongate.service.errors import (
    BackendError,
    BackendUnavailable,
    DeadlineExceeded,
    InvalidArgument,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    ServiceUnavailable,
)
from visiongate.service.inference import InferenceService
from visiongate.service.settings import Settings

PROTOCOLS = ("grpc", "http")

# tritonclient.http.aio posts the request as one bytes object; aiohttp warns (ResourceWarning, so
# silent outside tests) above 1 MiB, i.e. for any batch of a few 224x224 images.
pytestmark = pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")


# --- the mapping table: no server needed ---------------------------------------------------------

@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK], ids=str)
def test_every_grpc_status_has_an_entry(code: grpc.StatusCode) -> None:
    # tritonclient spells the status as str(grpc.StatusCode.X) (grpc/_utils.py get_error_grpc)
    assert str(code) in GRPC_STATUS


@pytest.mark.parametrize(("status", "expected"), [
    ("StatusCode.NOT_FOUND", ModelNotFound),
    ("StatusCode.UNAVAILABLE", BackendUnavailable),
    ("StatusCode.RESOURCE_EXHAUSTED", Overloaded),
    ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceeded),
    ("StatusCode.INVALID_ARGUMENT", InvalidArgument),
    ("StatusCode.INTERNAL", BackendError),
    ("404", ModelNotFound),
    ("400", InvalidArgument),
    ("503", BackendUnavailable),
    ("504", DeadlineExceeded),
    ("500", BackendError),
    ("418", BackendError),  # anything unlisted is the backend's fault, never the caller's
    (None, BackendError),
])
def test_status_maps_to_the_gateway_error(status: str | None, expected: type) -> None:
    assert error_class(status, "something went wrong") is expected


@pytest.mark.parametrize(("message", "expected"), [
    # Triton 2.51's own wording, seen on this machine; HTTP status 400 or 404 depending on version
    ("Request for unknown model: 'nope' is not found", ModelNotFound),
    ("Request for unknown model: 'efficientnet_lite0' version 7 is not found", ModelNotFound),
    ("Exceeds maximum queue size", Overloaded),
    ("Request for unknown model: 'x' has no available versions", ModelNotReady),
    ("model 'x' version 1 is not at ready state", ModelNotReady),
])
def test_message_is_more_specific_than_the_status(message: str, expected: type) -> None:
    assert error_class("400", message) is expected


def test_every_mapped_class_is_a_gateway_error_with_a_status_code() -> None:
    for cls in {*GRPC_STATUS.values(), *HTTP_STATUS.values()}:
        assert cls.status_code in (400, 404, 502, 503, 504)


def test_triton_errors_keeps_the_cause_and_sets_retry_after() -> None:
    raw = InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")
    with pytest.raises(BackendUnavailable) as caught, triton_errors("m", retry_after_s=3.0):
        raise raw
    assert caught.value.__cause__ is raw and caught.value.retry_after_s == 3.0
    assert isinstance(caught.value, ServiceUnavailable)


def test_triton_errors_maps_transport_failures() -> None:
    import aiohttp

    with pytest.raises(BackendUnavailable), triton_errors():
        raise aiohttp.ServerDisconnectedError()
    with pytest.raises(BackendUnavailable), triton_errors():
        raise ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(DeadlineExceeded), triton_errors():
        raise TimeoutError()


def test_classification_strings_give_labels_in_class_order() -> None:
    # what Triton's classification extension answered for a zero image (class_count=3 of 3)
    entries = np.array([b"5.3:2:doormat", b"5.0:0:loud:speaker", b"4.6:1:microwave"], dtype=object)
    assert parse_classification(entries, 3) == ("loud:speaker", "microwave", "doormat")
    assert parse_classification(entries[:2], 3) is None  # a class missing: no partial label list


# --- against a real Triton -----------------------------------------------------------------------

def settings_for(url: str, protocol: str, repository: Path, **extra: object) -> Settings:
    return Settings(backend="triton", triton_url=url, triton_protocol=protocol, repository=repository,
                    triton_poll_interval_s=0.5, **extra)  # type: ignore[arg-type]


@pytest.fixture(params=PROTOCOLS)
async def service(request: pytest.FixtureRequest, triton: TritonServer,
                  repository: Path) -> AsyncIterator[InferenceService]:
    settings = settings_for(triton.url(request.param), request.param, repository)
    backend = TritonBackend(settings)
    await backend.start()
    svc = InferenceService(backend, settings)
    yield svc
    await backend.close()
    svc.close()


@pytest.fixture
async def embedded(repository: Path) -> AsyncIterator[InferenceService]:
    settings = Settings(repository=repository)
    backend = OnnxRuntimeBackend(settings)
    await backend.start()
    svc = InferenceService(backend, settings)
    yield svc
    await backend.close()
    svc.close()


@pytest.mark.triton
async def test_sees_the_models_and_specs_the_embedded_runtime_sees(service: InferenceService,
                                                                   embedded: InferenceService) -> None:
    assert service.backend.ready()
    remote = {m.name: m for m in service.backend.models()}
    for local in embedded.backend.models():
        spec = remote[local.name]
        assert (spec.task, spec.inputs, spec.outputs, spec.preprocess, spec.max_batch_size, spec.labels,
                spec.versions, spec.max_queue_delay_us) == (
                local.task, local.inputs, local.outputs, local.preprocess, local.max_batch_size,
                local.labels, local.versions, local.max_queue_delay_us)
        assert {k: v for k, v in spec.parameters.items() if k != "EXECUTION_ENV_PATH"} == local.parameters


@pytest.mark.triton
@pytest.mark.parametrize("name", ["chelsea", "coffee"])
async def test_same_top_k_as_the_embedded_runtime(service: InferenceService, embedded: InferenceService,
                                                  name: str, request: pytest.FixtureRequest) -> None:
    jpeg = request.getfixturevalue(f"{name}_jpeg")
    [remote] = await service.classify([jpeg], "efficientnet_lite0", top=5)
    [local] = await embedded.classify([jpeg], "efficientnet_lite0", top=5)
    assert [p.class_id for p in remote.predictions] == [p.class_id for p in local.predictions]
    assert [p.label for p in remote.predictions] == [p.label for p in local.predictions]
    np.testing.assert_allclose([p.score for p in remote.predictions], [p.score for p in local.predictions],
                               atol=1e-5)
    top = remote.predictions[0].class_id
    assert top in ((281, 282, 285) if name == "chelsea" else (967,))  # tabby/tiger/Egyptian cat; espresso


@pytest.mark.triton
async def test_more_images_than_max_batch_size_are_split_and_kept_in_order(
        service: InferenceService, chelsea_jpeg: bytes, coffee_jpeg: bytes) -> None:
    images = [chelsea_jpeg, coffee_jpeg] * 6  # 12 > max_batch_size 8
    results = await service.classify(images, "efficientnet_lite0", top=1)
    assert [r.predictions[0].class_id == 967 for r in results] == [False, True] * 6


@pytest.mark.triton
async def test_concurrent_requests_all_get_their_own_answer(service: InferenceService, chelsea_jpeg: bytes,
                                                            coffee_jpeg: bytes) -> None:
    jobs = [service.classify([chelsea_jpeg if i % 2 else coffee_jpeg], "efficientnet_lite0", top=1)
            for i in range(16)]
    results = await asyncio.gather(*jobs)
    assert [r[0].predictions[0].class_id == 967 for r in results] == [i % 2 == 0 for i in range(16)]


@pytest.mark.triton
async def test_unknown_model_and_version_are_not_found(service: InferenceService, chelsea_jpeg: bytes) -> None:
    with pytest.raises(ModelNotFound):
        await service.classify([chelsea_jpeg], "no_such_model")
    with pytest.raises(ModelNotFound):
        await service.classify([chelsea_jpeg], "efficientnet_lite0", version=7)
    with pytest.raises(ModelNotFound):  # Triton's own NOT_FOUND / 404, past the gateway's cache
        await run_model(service.backend, "no_such_model", {"image": np.zeros((1, 224, 224, 3), np.uint8)})


@pytest.mark.triton
async def test_a_wrong_tensor_is_the_callers_fault(service: InferenceService) -> None:
    with pytest.raises(InvalidArgument, match="unexpected shape"):
        await run_model(service.backend, "efficientnet_lite0", {"image": np.zeros((1, 10, 10, 3), np.uint8)})


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_labels_come_from_triton_when_the_repository_is_not_visible(
        triton: TritonServer, repository: Path, tmp_path: Path, protocol: str) -> None:
    backend = TritonBackend(settings_for(triton.url(protocol), protocol, tmp_path / "not-mounted"))
    await backend.start()
    try:
        labels = backend.describe("efficientnet_lite0").labels
    finally:
        await backend.close()
    assert labels == tuple((repository / "efficientnet_lite0" / "labels.txt").read_text().split("\n")[:1000])


@pytest.mark.triton
@pytest.mark.parametrize("model", ["yolov3_tiny", "waifu2x_x2"])
async def test_detect_and_sr_tensors_match_the_embedded_runtime(service: InferenceService,
                                                                embedded: InferenceService, model: str) -> None:
    if model not in {m.name for m in embedded.backend.models()}:
        pytest.skip(f"{model} is not exported in this repository")
    from support import encode
    from visiongate.service.inference import prepare

    spec = embedded.backend.describe(model)
    image = encode(photo("astronaut")[:96, :128] if spec.task == "super_resolve" else photo("coffee"))
    tensor = prepare(image, spec, embedded.settings).tensor[None]
    remote = await run_model(service.backend, model, {spec.input.name: tensor})
    local = await run_model(embedded.backend, model, {spec.input.name: tensor})
    assert remote.keys() == local.keys()
    for name in local:  # detect: boxes [1,B,4] + scores [1,B,C]; SR: output [1,2H,2W,3]
        np.testing.assert_allclose(remote[name], local[name], rtol=1e-4, atol=1e-3)


# --- readiness follows Triton --------------------------------------------------------------------

def gateway_env(url: str, protocol: str = "grpc") -> dict[str, str]:
    return {"VISIONGATE_BACKEND": "triton", "VISIONGATE_TRITON_URL": url,
            "VISIONGATE_TRITON_PROTOCOL": protocol, "VISIONGATE_TRITON_POLL_INTERVAL_S": "0.5",
            "VISIONGATE_TRITON_TIMEOUT_S": "5"}


def classify(url: str, jpeg: bytes, model: str = "efficientnet_lite0") -> httpx.Response:
    return httpx.post(f"{url}/v1/classify", params={"model": model, "top_k": 3}, content=jpeg,
                      headers={"content-type": "image/jpeg"}, timeout=30)


@contextlib.contextmanager
def gateway_over(url: str, protocol: str, repository: Path) -> Iterator[GatewayProcess]:
    """A real `visiongate serve` process with VISIONGATE_BACKEND=triton; its log joins any failure."""
    proc = GatewayProcess(repository, gateway_env(url, protocol))
    try:
        yield proc
    except BaseException as exc:
        exc.add_note(f"gateway log:\n{proc.stop()[-4000:]}")
        raise
    finally:
        proc.stop()


def eventually(check: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gateway_over_triton_answers_like_the_embedded_gateway(
        triton: TritonServer, repository: Path, gateway: str, chelsea_jpeg: bytes, protocol: str) -> None:
    with gateway_over(triton.url(protocol), protocol, repository) as proc:
        wait_ready(proc.url)
        assert httpx.get(f"{proc.url}/readyz").json()["backend"] == "triton"
        remote, local = classify(proc.url, chelsea_jpeg), classify(gateway, chelsea_jpeg)
        assert remote.status_code == local.status_code == 200
        assert [p["class_id"] for p in remote.json()["predictions"]] == \
               [p["class_id"] for p in local.json()["predictions"]]
        missing = classify(proc.url, chelsea_jpeg, model="no_such_model")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "ModelNotFound"


@pytest.mark.triton
def test_gateway_starts_without_triton_and_becomes_ready_when_it_comes(
        spare_triton: TritonServer, repository: Path, chelsea_jpeg: bytes) -> None:
    with gateway_over(spare_triton.grpc_url, "grpc", repository) as proc:
        wait_ready(proc.url, path="/healthz")  # live at once
        assert httpx.get(f"{proc.url}/readyz").status_code == 503
        down = classify(proc.url, chelsea_jpeg)
        assert down.status_code == 503 and down.json()["error"]["type"] == "BackendUnavailable"
        assert int(down.headers["retry-after"]) >= 1

        spare_triton.start()
        wait_ready(proc.url, timeout_s=30)
        assert classify(proc.url, chelsea_jpeg).status_code == 200


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_triton_killed_mid_run_gives_503_then_recovers_by_itself(
        spare_triton: TritonServer, repository: Path, chelsea_jpeg: bytes, protocol: str) -> None:
    spare_triton.start()
    with gateway_over(spare_triton.url(protocol), protocol, repository) as proc:
        wait_ready(proc.url)
        assert classify(proc.url, chelsea_jpeg).status_code == 200

        spare_triton.kill()
        down = classify(proc.url, chelsea_jpeg)
        assert down.status_code == 503, down.text
        assert "retry-after" in down.headers
        eventually(lambda: httpx.get(f"{proc.url}/readyz").status_code == 503)

        spare_triton.start()
        wait_ready(proc.url, timeout_s=30)
        assert classify(proc.url, chelsea_jpeg).status_code == 200


async def test_backend_down_at_start_is_live_but_not_ready(repository: Path) -> None:
    backend = TritonBackend(settings_for(f"127.0.0.1:{free_port()}", "grpc", repository))
    await backend.start()
    try:
        assert not backend.ready() and backend.models() == []
        with pytest.raises(BackendUnavailable) as caught:
            backend.describe("efficientnet_lite0")
        assert caught.value.retry_after_s >= 1
    finally:
        await backend.close()
