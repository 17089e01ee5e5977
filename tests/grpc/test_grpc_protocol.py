"""The KServe v2 / Triton gRPC protocol, spoken by the unmodified ``tritonclient.grpc`` (sync, streaming)
against a real gateway process serving FakeBackend's deterministic models.

A few checks need what tritonclient hides (typed ``contents``, trailing metadata): those call
tritonclient's own generated stub (``tritonclient.grpc.service_pb2_grpc``) with a plain grpc channel.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import Gateway, start_gateway

RED = np.zeros((224, 224, 3), np.uint8)
RED[..., 0] = 255


@pytest.fixture(scope="module")
def client(fake_gateway: Gateway) -> Iterator[tg.InferenceServerClient]:
    with tg.InferenceServerClient(fake_gateway.grpc_url) as c:
        yield c


@pytest.fixture(scope="module")
def stub(fake_gateway: Gateway) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(fake_gateway.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _image_input(batch: np.ndarray) -> tg.InferInput:
    inp = tg.InferInput("image", list(batch.shape), "UINT8")
    inp.set_data_from_numpy(batch)
    return inp


def test_health_and_readiness(client: tg.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("fake_classifier")
    assert client.is_model_ready("fake_classifier", "1")
    assert not client.is_model_ready("fake_classifier", "7")
    assert not client.is_model_ready("no_such_model")


def test_server_metadata_names_the_extensions_implemented(client: tg.InferenceServerClient) -> None:
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "visiongate"
    assert set(meta["extensions"]) == {"binary_tensor_data", "classification", "model_configuration",
                                       "model_repository", "statistics", "encoded_images"}


def test_model_metadata_matches_rest(client: tg.InferenceServerClient, fake_gateway: Gateway) -> None:
    meta = client.get_model_metadata("fake_classifier", as_json=True)
    rest = httpx.get(f"{fake_gateway.http_url}/v2/models/fake_classifier").json()
    assert meta["name"] == rest["name"] == "fake_classifier"
    assert meta["versions"] == rest["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": ["-1", "224", "224", "3"]}]
    assert [int(d) for d in meta["outputs"][0]["shape"]] == rest["outputs"][0]["shape"] == [-1, 4]


def test_model_config_is_the_rest_config_read_with_tritons_schema(client: tg.InferenceServerClient,
                                                                  fake_gateway: Gateway) -> None:
    got = client.get_model_config("fake_detector").config
    rest = httpx.get(f"{fake_gateway.http_url}/v2/models/fake_detector/config").json()
    assert got == json_format.ParseDict(rest, model_config_pb2.ModelConfig())
    assert got.max_batch_size == 4 and got.input[0].data_type == model_config_pb2.TYPE_UINT8


def test_unknown_model_is_not_found(client: tg.InferenceServerClient) -> None:
    for call in (lambda: client.get_model_metadata("nope"), lambda: client.get_model_config("nope"),
                 lambda: client.infer("nope", [_image_input(RED[None])])):
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == "StatusCode.NOT_FOUND"
        assert "nope" in err.value.message()


def test_infer_raw_tensors_gives_the_models_logits(client: tg.InferenceServerClient) -> None:
    batch = np.stack([RED, np.full_like(RED, 128)])
    result = client.infer("fake_classifier", [_image_input(batch)], request_id="r-1")
    logits = result.as_numpy("logits")
    assert logits.dtype == np.float32 and logits.shape == (2, 4)
    np.testing.assert_allclose(logits[0], [10, 0, 0, 5])
    np.testing.assert_allclose(logits[1], [128 / 255 * 10] * 3 + [5], rtol=1e-6)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("r-1", "fake_classifier", "1")


def test_grpc_and_rest_give_bit_identical_outputs(client: tg.InferenceServerClient, fake_gateway: Gateway) -> None:
    import tritonclient.http as th

    batch = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    via_grpc = client.infer("fake_classifier", [_image_input(batch)]).as_numpy("logits")
    with th.InferenceServerClient(fake_gateway.http_host) as http:
        inp = th.InferInput("image", list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch, binary_data=True)
        via_rest = http.infer("fake_classifier", [inp]).as_numpy("logits")
    assert via_grpc.tobytes() == via_rest.tobytes()


def test_classification_extension_returns_the_same_strings_as_rest(client: tg.InferenceServerClient) -> None:
    out = tg.InferRequestedOutput("logits", class_count=2)
    got = client.infer("fake_classifier", [_image_input(RED[None])], outputs=[out]).as_numpy("logits")
    assert got.tolist() == [[b"10.000000:0:red", b"5.000000:3:gray"]]


def test_typed_contents_are_read_like_raw_contents(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = service_pb2.ModelInferRequest(model_name="fake_classifier")
    tensor = request.inputs.add(name="image", datatype="UINT8", shape=[1, 224, 224, 3])
    tensor.contents.uint_contents.extend(RED.reshape(-1).tolist())
    response = stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["logits"]
    np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[0], "<f4"), [10, 0, 0, 5])


def _batch(request: service_pb2.ModelInferRequest, n: int) -> None:
    request.inputs[0].shape[0] = n
    request.raw_input_contents[0] = np.repeat(RED[None], n, axis=0).tobytes()


def _classification(request: service_pb2.ModelInferRequest, k: str) -> None:
    request.outputs.add(name="logits").parameters["classification"].string_param = k


def _status(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda r: setattr(r.inputs[0], "datatype", "FP32"), "needs 602112 bytes"),
    (lambda r: r.inputs[0].shape.__setitem__(0, 9), "needs 1354752 bytes, got 150528"),
    (lambda r: _batch(r, 9), "not in 1..8"),
    (lambda r: setattr(r.inputs[0], "name", "pixels"), "takes inputs ['image']"),
    (lambda r: r.raw_input_contents.append(b"x"), "raw_input_contents has 2 entries"),
    (lambda r: setattr(r, "model_version", "one"), "model_version"),
    (lambda r: r.outputs.add(name="probabilities"), "no output 'probabilities'"),
    (lambda r: _classification(r, "two"), "positive integer"),
])
def test_bad_requests_are_invalid_argument_naming_the_problem(
        stub: service_pb2_grpc.GRPCInferenceServiceStub, mutate: Any, fragment: str) -> None:
    request = service_pb2.ModelInferRequest(model_name="fake_classifier")
    request.inputs.add(name="image", datatype="UINT8", shape=[1, 224, 224, 3])
    request.raw_input_contents.append(RED.tobytes())
    mutate(request)
    err = _status(lambda: stub.ModelInfer(request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in str(err.details())


def test_a_message_over_the_size_limit_is_resource_exhausted(tmp_path_factory: pytest.TempPathFactory) -> None:
    for gw in start_gateway(tmp_path_factory.mktemp("repo"), VISIONGATE_BACKEND="fake",
                            VISIONGATE_GRPC_MAX_MESSAGE_BYTES="100000"):
        with tg.InferenceServerClient(gw.grpc_url) as c, pytest.raises(InferenceServerException) as err:
            c.infer("fake_classifier", [_image_input(RED[None])])
        assert err.value.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_overload_is_unavailable_with_retry_after_in_the_trailers(tmp_path_factory: pytest.TempPathFactory) -> None:
    for gw in start_gateway(tmp_path_factory.mktemp("repo"), VISIONGATE_BACKEND="fake",
                            VISIONGATE_MAX_OPEN_REQUESTS="1"):
        request = service_pb2.ModelInferRequest(model_name="fake_classifier")
        request.inputs.add(name="image", datatype="UINT8", shape=[8, 224, 224, 3])
        request.raw_input_contents.append(np.repeat(RED[None], 8, axis=0).tobytes())
        with grpc.insecure_channel(gw.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            futures = [stub.ModelInfer.future(request) for _ in range(64)]
            refused = []
            for f in futures:
                if f.exception() is None:
                    assert f.result().model_name == "fake_classifier"
                else:
                    refused.append(f.exception())
        assert refused, "64 concurrent requests with max_open_requests=1: some must be refused"
        for err in refused:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert ("retry-after", "1") in tuple(err.trailing_metadata())
        metrics = httpx.get(f"{gw.http_url}/metrics").text
        assert 'route="/inference.GRPCInferenceService/ModelInfer",status="UNAVAILABLE"' in metrics


def test_streaming_answers_every_request_and_reports_errors_in_the_stream(
        client: tg.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(6):
            client.async_stream_infer("fake_classifier", [_image_input(RED[None])], request_id=f"s{i}")
        client.async_stream_infer("no_such_model", [_image_input(RED[None])], request_id="bad")
        client.async_stream_infer("fake_classifier", [_image_input(RED[None])], request_id="after")
        got = [answers.get(timeout=30) for _ in range(8)]
    finally:
        client.stop_stream()
    ok = {r.get_response().id: r.as_numpy("logits") for r, e in got if e is None}
    errors = [e for r, e in got if e is not None]
    assert set(ok) == {f"s{i}" for i in range(6)} | {"after"}
    for logits in ok.values():
        np.testing.assert_allclose(logits, [[10, 0, 0, 5]])
    assert len(errors) == 1 and "no_such_model" in errors[0].message()


def test_concurrent_sync_clients(fake_gateway: Gateway) -> None:
    def one(i: int) -> float:
        with tg.InferenceServerClient(fake_gateway.grpc_url) as c:
            batch = np.full((1, 224, 224, 3), i, np.uint8)
            return float(c.infer("fake_classifier", [_image_input(batch)]).as_numpy("logits")[0, 0])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(0, 256, 8)))
    np.testing.assert_allclose(got, [i / 255 * 10 for i in range(0, 256, 8)], rtol=1e-5)


def test_statistics_count_the_inferences(client: tg.InferenceServerClient, fake_gateway: Gateway) -> None:
    before = client.get_inference_statistics("fake_detector", as_json=True)["model_stats"][0]
    batch = np.zeros((3, 320, 320, 3), np.uint8)
    client.infer("fake_detector", [_image_input(batch)])
    stats = client.get_inference_statistics("fake_detector", as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) == int(before.get("inference_count", 0)) + 3
    assert int(stats["inference_stats"]["success"]["count"]) >= 1
    assert int(stats["inference_stats"]["compute_infer"]["ns"]) > 0
    every = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {s["name"] for s in every} == {"fake_classifier", "fake_detector", "fake_upscaler"}
    rest = httpx.get(f"{fake_gateway.http_url}/v2/models/fake_detector/stats").json()["model_stats"][0]
    assert rest["inference_count"] == int(stats["inference_count"])


def test_repository_index_matches_rest(client: tg.InferenceServerClient, fake_gateway: Gateway) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    rest = httpx.post(f"{fake_gateway.http_url}/v2/repository/index", json={}).json()
    assert [(m["name"], m["version"], m["state"]) for m in index] == \
        [(m["name"], m["version"], m["state"]) for m in rest]
    assert {m["name"] for m in index} == {"fake_classifier", "fake_detector", "fake_upscaler"}


def test_load_and_unload_are_refused_unless_model_control_is_explicit(client: tg.InferenceServerClient) -> None:
    for call in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException) as err:
            call("fake_classifier")
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "VISIONGATE_MODEL_CONTROL" in err.value.message()


def test_explicit_model_control_unloads_and_loads(tmp_path_factory: pytest.TempPathFactory) -> None:
    for gw in start_gateway(tmp_path_factory.mktemp("repo"), VISIONGATE_BACKEND="fake",
                            VISIONGATE_MODEL_CONTROL="explicit"):
        with tg.InferenceServerClient(gw.grpc_url) as c:
            c.unload_model("fake_upscaler")
            assert not c.is_model_ready("fake_upscaler")
            with pytest.raises(InferenceServerException) as err:
                c.infer("fake_upscaler", [_image_input(np.zeros((1, 8, 8, 3), np.uint8))])
            assert err.value.status() in ("StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE")
            c.load_model("fake_upscaler")
            assert c.is_model_ready("fake_upscaler")
            out = c.infer("fake_upscaler", [_image_input(np.zeros((1, 8, 8, 3), np.uint8))]).as_numpy("output")
            assert out.shape == (1, 16, 16, 3)
            with pytest.raises(InferenceServerException) as err:
                c.load_model("no_such_model")
            assert err.value.status() == "StatusCode.NOT_FOUND"


def test_an_unimplemented_rpc_says_so(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    err = _status(lambda: stub.SystemSharedMemoryStatus(service_pb2.SystemSharedMemoryStatusRequest()))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_health_check_follows_readiness(fake_gateway: Gateway) -> None:
    from visiongate.service.protocol import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(fake_gateway.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            got = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert got.status == health_pb2.HealthCheckResponse.SERVING
        other = health.Check(health_pb2.HealthCheckRequest(service="other.Service"))
        assert other.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
