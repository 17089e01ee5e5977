"""tritonclient's gRPC and HTTP asyncio clients behind the few verbs the Triton backend uses."""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from ..settings import Settings


class _GrpcClient:
    """tritonclient.grpc.aio behind the few verbs the backend uses. Tensors go as raw contents."""

    def __init__(self, settings: Settings) -> None:
        import tritonclient.grpc as grpcclient
        import tritonclient.grpc.aio as grpcaio

        self._mod = grpcclient
        backoff_ms = int(1000 * max(0.1, settings.triton_poll_interval_s))
        self._client = grpcaio.InferenceServerClient(settings.triton_url, channel_args=[
            # tritonclient's own limits (tensors, SR images), which channel_args would otherwise drop
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1),
            # gRPC's reconnect backoff grows to 120 s by default: a restarted Triton would stay
            # unnoticed that long. Cap it at the poll interval.
            ("grpc.initial_reconnect_backoff_ms", min(1000, backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(1000, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ])

    async def close(self) -> None:
        await self._client.close()

    async def server_ready(self, timeout: float) -> bool:
        return bool(await self._client.is_server_ready(client_timeout=timeout))

    async def repository_index(self, timeout: float) -> list[dict[str, Any]]:
        index = await self._client.get_model_repository_index(as_json=True, client_timeout=timeout)
        return list(index.get("models", []))

    async def load_model(self, name: str, timeout: float) -> None:
        await self._client.load_model(name, client_timeout=timeout)

    async def unload_model(self, name: str, timeout: float) -> None:
        await self._client.unload_model(name, client_timeout=timeout)

    async def statistics(self, name: str, version: str, timeout: float) -> list[dict[str, Any]]:
        stats = await self._client.get_inference_statistics(name, version, as_json=True, client_timeout=timeout)
        return list(stats.get("model_stats", []))

    async def model_config(self, name: str, timeout: float) -> dict[str, Any]:
        # proto3 JSON: int64 fields (dims, delays) arrive as strings; spec_from_config int()s them
        return dict((await self._client.get_model_config(name, as_json=True, client_timeout=timeout))["config"])

    async def infer(self, name: str, inputs: dict[str, np.ndarray], outputs: list[str], version: int | None,
                    timeout: float, class_count: int = 0) -> dict[str, np.ndarray]:
        tensors = []
        for key, array in inputs.items():
            tensor = self._mod.InferInput(key, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            tensors.append(tensor)
        wanted = [self._mod.InferRequestedOutput(o, class_count=class_count) for o in outputs]
        result = await self._client.infer(name, tensors, model_version="" if version is None else str(version),
                                          outputs=wanted, client_timeout=timeout)
        return {o: result.as_numpy(o) for o in outputs}


class _HttpClient:
    """tritonclient.http.aio (aiohttp) behind the same verbs. Tensors use the binary extension."""

    def __init__(self, settings: Settings) -> None:
        import tritonclient.http as httpclient
        import tritonclient.http.aio as httpaio

        self._mod = httpclient
        self._client = httpaio.InferenceServerClient(settings.triton_url, conn_timeout=settings.triton_timeout_s)

    async def close(self) -> None:
        await self._client.close()

    async def server_ready(self, timeout: float) -> bool:
        return bool(await self._client.is_server_ready())

    async def repository_index(self, timeout: float) -> list[dict[str, Any]]:
        return list(await self._client.get_model_repository_index())

    async def model_config(self, name: str, timeout: float) -> dict[str, Any]:
        return dict(await self._client.get_model_config(name))

    async def load_model(self, name: str, timeout: float) -> None:
        await self._client.load_model(name)

    async def unload_model(self, name: str, timeout: float) -> None:
        await self._client.unload_model(name)

    async def statistics(self, name: str, version: str, timeout: float) -> list[dict[str, Any]]:
        return list((await self._client.get_inference_statistics(name, version)).get("model_stats", []))

    async def infer(self, name: str, inputs: dict[str, np.ndarray], outputs: list[str], version: int | None,
                    timeout: float, class_count: int = 0) -> dict[str, np.ndarray]:
        tensors = []
        for key, array in inputs.items():
            tensor = self._mod.InferInput(key, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
            tensors.append(tensor)
        wanted = [self._mod.InferRequestedOutput(o, binary_data=True, class_count=class_count) for o in outputs]
        result = await self._client.infer(name, tensors, model_version="" if version is None else str(version),
                                          outputs=wanted)
        return {o: result.as_numpy(o) for o in outputs}


TritonClient = _GrpcClient | _HttpClient


def make_client(settings: Settings) -> TritonClient:
    """Build inside a running event loop: both clients bind to it (aiohttp warns otherwise)."""
    return _HttpClient(settings) if settings.triton_protocol == "http" else _GrpcClient(settings)
