"""Runs inside the KServe SDK's own environment (``/tmp/venv-kserve``): infers one red image on
``fake_classifier`` through the SDK's v2 REST and gRPC clients and prints what came back as JSON.

Usage: python kserve_sdk_client.py <http base url> <grpc host:port>
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def request() -> InferRequest:
    image = np.zeros((1, 224, 224, 3), np.uint8)
    image[..., 0] = 255
    tensor = InferInput(name="image", shape=list(image.shape), datatype="UINT8")
    tensor.set_data_from_numpy(image, binary_data=False)
    return InferRequest(model_name="fake_classifier", infer_inputs=[tensor], request_id="kserve-1")


async def main(http_url: str, grpc_url: str) -> None:
    out: dict[str, object] = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    response = await rest.infer(http_url, request(), model_name="fake_classifier")
    out["rest"] = response.outputs[0].as_numpy().tolist()
    await rest.close()
    grpc_client = InferenceGRPCClient(grpc_url, retries=0)
    out["grpc_live"] = await grpc_client.is_server_live()
    out["grpc_ready"] = await grpc_client.is_server_ready()
    out["grpc_model_ready"] = await grpc_client.is_model_ready("fake_classifier")
    response = await grpc_client.infer(request())
    out["grpc"] = response.outputs[0].as_numpy().tolist()
    out["grpc_id"] = response.id
    await grpc_client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
