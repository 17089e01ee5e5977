"""One error tree, one mapping per protocol: every class answers in every protocol's shape."""

from __future__ import annotations

import httpx
import pytest

from visiongate.service import errors
from visiongate.service.errors import GRPC_STATUS, VisionGateError, error_body, grpc_status, protocol_of


def _tree(cls: type[VisionGateError]) -> list[type[VisionGateError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _tree(sub))]


ALL = _tree(VisionGateError)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_class_has_a_mapping_in_every_protocol(cls: type[VisionGateError]) -> None:
    exc = cls("what went wrong")
    assert 400 <= exc.status_code < 600 or exc.status_code == 499
    assert error_body(exc, "task") == {"error": {"type": cls.__name__, "message": "what went wrong"}}
    assert error_body(exc, "oip") == {"error": "what went wrong"}
    # gRPC: each class decides its own code (a new class without an entry fails here)
    assert cls in GRPC_STATUS, f"{cls.__name__} has no gRPC status in errors.GRPC_STATUS"
    assert grpc_status(exc) == GRPC_STATUS[cls]


def test_the_tree_is_every_error_the_module_defines() -> None:
    defined = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, VisionGateError)}
    assert defined == set(ALL)


@pytest.mark.parametrize("path, protocol", [("/v2", "oip"), ("/v2/models/m/infer", "oip"), ("/v1/classify", "task"),
                                            ("/v2x", "task"), ("/metrics", "task")])
def test_the_protocol_is_chosen_by_path(path: str, protocol: str) -> None:
    assert protocol_of(path) == protocol


@pytest.mark.parametrize("method, path, status", [("GET", "/v2/nowhere", 404), ("DELETE", "/v2", 405),
                                                  ("GET", "/v2/models/no_such_model", 404),
                                                  ("POST", "/v2/models/fake_classifier/infer", 400)])
def test_every_v2_error_is_the_protocol_s_string_body(fake_gateway: str, method: str, path: str,
                                                      status: int) -> None:
    r = httpx.request(method, fake_gateway + path, content=b"{not json")
    assert r.status_code == status
    body = r.json()
    assert isinstance(body["error"], str) and body["error"], body


def test_task_api_errors_keep_the_typed_body(fake_gateway: str) -> None:
    r = httpx.get(fake_gateway + "/v1/nowhere")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "RouteNotFound"
    assert "/v1/nowhere" in r.json()["error"]["message"]
