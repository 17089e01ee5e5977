"""gRPC takes the same API keys, scopes and limits as REST, the key read from the call's metadata."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import Gateway, start_gateway

KEY = "vg_grpc_test_key_0123456789abcdef"
READ_ONLY = "vg_grpc_read_only_key_0123456789"


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    keys = {"keys": [
        {"name": "client", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "scopes": ["infer", "read"]},
        {"name": "dash", "sha256": hashlib.sha256(READ_ONLY.encode()).hexdigest(), "scopes": ["read"]},
    ]}
    store = Path(tmp_path_factory.mktemp("keys")) / "keys.json"
    store.write_text(json.dumps(keys))
    yield from start_gateway(tmp_path_factory.mktemp("repo"), VISIONGATE_BACKEND="fake",
                             VISIONGATE_API_KEYS_FILE=str(store))


def _infer(client: grpcclient.InferenceServerClient, headers: dict[str, str] | None) -> np.ndarray:
    image = grpcclient.InferInput("image", [1, 224, 224, 3], "UINT8")
    image.set_data_from_numpy(np.full((1, 224, 224, 3), 200, np.uint8))
    result = client.infer("fake_classifier", [image], headers=headers)
    return result.as_numpy("logits")  # type: ignore[no-any-return]


def test_no_key_is_unauthenticated(keyed_gateway: Gateway) -> None:
    client = grpcclient.InferenceServerClient(keyed_gateway.grpc_url)
    with pytest.raises(InferenceServerException) as err:
        _infer(client, None)
    assert err.value.status() == "StatusCode.UNAUTHENTICATED"


def test_a_key_without_the_scope_is_permission_denied(keyed_gateway: Gateway) -> None:
    client = grpcclient.InferenceServerClient(keyed_gateway.grpc_url)
    with pytest.raises(InferenceServerException) as err:
        _infer(client, {"authorization": f"Bearer {READ_ONLY}"})
    assert err.value.status() == "StatusCode.PERMISSION_DENIED"
    # reading is what that key may do
    assert client.get_model_metadata("fake_classifier", headers={"x-api-key": READ_ONLY}).name == "fake_classifier"


def test_a_key_with_the_scope_is_served(keyed_gateway: Gateway) -> None:
    client = grpcclient.InferenceServerClient(keyed_gateway.grpc_url)
    logits = _infer(client, {"authorization": f"Bearer {KEY}"})
    assert logits.shape == (1, 4)
    # health stays open for probes
    assert client.is_server_live()
