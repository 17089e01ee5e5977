"""The OpenAPI document tells callers the truth: every route that can fail documents its error
answers (with the body shape it really sends), and every POST documents its request body."""

from __future__ import annotations

from typing import Any

import pytest

from visiongate.service.app import create_app
from visiongate.service.settings import Settings

#: routes that cannot answer with an error, and why
NEVER_FAIL = {
    ("get", "/healthz"): "liveness: answering at all is the answer",
    ("get", "/metrics"): "plain Prometheus text",
    ("get", "/v2"): "static server metadata",
    ("get", "/v2/health/live"): "liveness",
    ("get", "/v1/models"): "lists what is loaded, possibly nothing",
}
TASK_ERROR_FIELDS = {"type", "message"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


def test_every_route_that_can_fail_documents_json_errors(schema: dict[str, Any]) -> None:
    missing = []
    for method, path, op in operations(schema):
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45" and code != "422"}
        if (method, path) in NEVER_FAIL:
            continue
        if not errors:
            missing.append(f"{method.upper()} {path}")
            continue
        for code, response in errors.items():
            if path == "/readyz" or path == "/v2/health/ready":
                continue  # documented; the body is the health shape / empty, by protocol
            content = response.get("content", {})
            assert "application/json" in content, f"{method.upper()} {path} {code} has no JSON body"
    assert missing == []


def test_task_errors_use_the_project_error_body(schema: dict[str, Any]) -> None:
    for _method, path, op in operations(schema):
        if not path.startswith("/v1/"):
            continue
        for code, response in op["responses"].items():
            if code[0] not in "45" or code == "422":
                continue
            body = resolve(schema, response["content"]["application/json"]["schema"])
            inner = resolve(schema, body["properties"]["error"])
            assert set(inner["properties"]) >= TASK_ERROR_FIELDS, f"{path} {code}"


def test_v2_errors_use_the_protocol_error_string(schema: dict[str, Any]) -> None:
    seen = 0
    for _method, path, op in operations(schema):
        if not path.startswith("/v2/models"):
            continue
        for code, response in op["responses"].items():
            if code[0] not in "45" or code == "422":
                continue
            body = resolve(schema, response["content"]["application/json"]["schema"])
            assert body["properties"]["error"]["type"] == "string", f"{path} {code}"
            seen += 1
    assert seen >= 8


def test_every_post_documents_its_request_body(schema: dict[str, Any]) -> None:
    posts = [(path, op) for method, path, op in operations(schema) if method == "post"]
    assert len(posts) >= 3
    for path, op in posts:
        if path.startswith("/v2/repository/models/"):
            continue  # load and unload take no body in the protocol
        content = op.get("requestBody", {}).get("content", {})
        assert content, f"POST {path} documents no request body"
        if path.startswith("/v1/"):
            assert {"image/jpeg", "multipart/form-data", "application/json"} <= set(content), path
        elif path == "/v2/repository/index":
            assert "application/json" in content
        else:
            assert {"application/json", "application/octet-stream"} <= set(content), path


def test_the_task_endpoints_document_every_caller_mistake(schema: dict[str, Any]) -> None:
    for path in ("/v1/classify", "/v1/detect", "/v1/super-resolve"):
        if path not in schema["paths"]:
            continue
        codes = set(schema["paths"][path]["post"]["responses"])
        assert {"400", "404", "413", "415", "503"} <= codes, path


def test_no_route_documents_a_422_the_gateway_never_sends(schema: dict[str, Any]) -> None:
    """Validation errors are answered as 400 (service.errors); FastAPI's automatic 422 entries
    would send client generators after a status code that never comes."""
    with_422 = [f"{m.upper()} {p}" for m, p, op in operations(schema) if "422" in op["responses"]]
    assert with_422 == []


def test_the_playground_is_not_in_the_api_document(schema: dict[str, Any]) -> None:
    assert not any(p == "/" or p.startswith("/ui") for p in schema["paths"])
