"""The Open Inference Protocol (KServe v2 / Triton) REST API over the same models as the task endpoints.

Tensor in, tensor out: ``/v2/models/{m}/infer`` hands the caller's tensors straight to
``backend.infer`` after checking names, datatypes and shapes against the model's ``ModelSpec``, so a
``tritonclient.http`` client written for Triton works unchanged against the gateway. Supported
extensions: binary tensor data and classification. Errors use the protocol's ``{"error": "<message>"}``
body on every ``/v2`` path (``errors.protocol_of``), written by the app's one error mapping.
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from .. import __version__, dataplane, oip
from ..backends.base import resolve_version
from ..errors import BodyTooLarge, InvalidArgument
from ..inference import InferenceService
from ..model_config import config_from_dict, triton_config_json
from ..repository import ModelSpec
from ..settings import Settings
from . import v2_codec as codec
from .deps import ServiceDep, SettingsDep
from .images import read_body
from .routing import inference_route

EXTENSIONS = ["binary_tensor_data", "classification", "encoded_images", "model_configuration", "model_repository",
              "statistics"]


router = APIRouter(tags=["open inference protocol v2"])

_OIP_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def oip_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad request: unknown input or output, wrong datatype or shape, malformed tensor data",
        404: "Unknown model or version",
        413: "Body over the configured limit",
        502: "The backend answered with an error",
        503: "Overloaded, backend down or model not ready; see Retry-After",
        504: "Request deadline exceeded",
    }
    return {c: {"description": descriptions[c], "content": {"application/json": {"schema": _OIP_ERROR_SCHEMA}}}
            for c in codes}


_TENSOR_SCHEMA = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "enum": sorted(codec.V2_DTYPES)},
        "parameters": {"type": "object", "description": "binary_data_size: bytes of this input after the JSON"},
        "data": {"type": "array", "description": "row-major values (flat or nested); absent for binary inputs"},
    },
}
INFER_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object", "description": "binary_data_output: true for binary outputs"},
                "inputs": {"type": "array", "items": _TENSOR_SCHEMA},
                "outputs": {"type": "array", "items": {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": {
                        "type": "object", "description": "binary_data: bool; classification: top-K as strings"}},
                }},
            },
        }},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "binary-data extension: the JSON header (its length in the "
                           "Inference-Header-Content-Length header) followed by the raw input tensors",
        },
    },
}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


def _tensor_meta(spec: ModelSpec, tensors: tuple[Any, ...]) -> list[TensorMetadata]:
    batch = [-1] if spec.max_batch_size > 0 else []
    return [TensorMetadata(name=t.name, datatype=codec.v2_datatype(t.data_type), shape=batch + list(t.dims))
            for t in tensors]


def _spec(service: InferenceService, model: str, version: int | None) -> ModelSpec:
    spec = service.backend.describe(model)
    resolve_version(spec, version)
    return spec


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidArgument(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidArgument(f"the {encoding} body cannot be decompressed: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"the decompressed body is over the limit of {limit} bytes", limit=limit)
    return out


@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="visiongate", version=__version__, extensions=EXTENSIONS)


# declared before "/v2/models/{model}", which would otherwise take "stats" for a model name
@router.get("/v2/models/stats", summary="Statistics of every model (statistics extension)",
            responses=oip_errors(503))
async def all_stats(service: ServiceDep) -> dict[str, Any]:
    return dataplane.stats_json(await service.backend.stats())



@router.get("/v2/health/live", summary="Server liveness (200 = live)", response_class=Response)
async def server_live() -> Response:
    return Response(status_code=200)


@router.get("/v2/health/ready", summary="Server readiness (200 = ready, 503 = not)", response_class=Response,
            responses={503: {"description": "not ready: starting, draining, or backend down"}})
async def server_ready(request: Request, service: ServiceDep) -> Response:
    if getattr(request.app.state, "draining", False) or not service.backend.ready():
        return Response(status_code=503, headers={"Retry-After": "2"})
    return Response(status_code=200)


@router.get("/v2/models/{model}", response_model=ModelMetadata, summary="Model metadata",
            responses=oip_errors(404))
async def model_metadata(model: str, service: ServiceDep) -> ModelMetadata:
    return _metadata(_spec(service, model, None))


@router.get("/v2/models/{model}/versions/{version}", response_model=ModelMetadata,
            summary="Model metadata of one version", responses=oip_errors(400, 404))
async def model_version_metadata(model: str, version: int, service: ServiceDep) -> ModelMetadata:
    return _metadata(_spec(service, model, version))


def _metadata(spec: ModelSpec) -> ModelMetadata:
    return ModelMetadata(name=spec.name, versions=[str(v) for v in spec.versions], platform=spec.platform,
                         inputs=_tensor_meta(spec, spec.inputs), outputs=_tensor_meta(spec, spec.outputs))


def _ready(service: InferenceService, model: str, version: int | None) -> Response:
    _spec(service, model, version)  # 404 unknown, 503 not ready (with its reason)
    return Response(status_code=200)


@router.get("/v2/models/{model}/ready", summary="Model readiness (200 = ready)", response_class=Response,
            responses=oip_errors(404, 503))
async def model_ready(model: str, service: ServiceDep) -> Response:
    return _ready(service, model, None)


@router.get("/v2/models/{model}/versions/{version}/ready", summary="Model version readiness",
            response_class=Response, responses=oip_errors(400, 404, 503))
async def model_version_ready(model: str, version: int, service: ServiceDep) -> Response:
    return _ready(service, model, version)


def _config(spec: ModelSpec) -> dict[str, Any]:
    """The whole config, completed from the graph and filled with Triton's defaults, as Triton
    answers it (what was inferred and from where is in ``/v1/models``)."""
    config = spec.config if spec.config is not None else config_from_dict(
        {"name": spec.name, "platform": spec.platform, "max_batch_size": spec.max_batch_size})
    return triton_config_json(config)


@router.get("/v2/models/{model}/config", summary="Model configuration (Triton's model-config JSON shape)",
            responses=oip_errors(404))
async def model_config(model: str, service: ServiceDep) -> dict[str, Any]:
    return _config(_spec(service, model, None))


@router.get("/v2/models/{model}/versions/{version}/config", summary="Model configuration of one version",
            responses=oip_errors(400, 404))
async def model_version_config(model: str, version: int, service: ServiceDep) -> dict[str, Any]:
    return _config(_spec(service, model, version))


_INFER_DOC: dict[str, Any] = dict(
    response_class=Response, openapi_extra={"requestBody": INFER_REQUEST_BODY},
    responses={200: {"description": "JSON outputs, or a JSON header plus binary outputs "
                                    "(Inference-Header-Content-Length)"},
               **oip_errors(400, 404, 413, 502, 503, 504)},
)


@router.post("/v2/models/{model}/infer", summary="Inference on caller-made tensors", **_INFER_DOC)
@inference_route()
async def infer(request: Request, model: str, service: ServiceDep, settings: SettingsDep) -> Response:
    return await _infer(request, service, settings, model, None)


@router.post("/v2/models/{model}/versions/{version}/infer", summary="Inference on one model version",
             **_INFER_DOC)
@inference_route()
async def infer_version(request: Request, model: str, version: int, service: ServiceDep,
                        settings: SettingsDep) -> Response:
    return await _infer(request, service, settings, model, version)


async def _infer(request: Request, service: InferenceService, settings: Settings, model: str,
                 version: int | None) -> Response:
    spec = _spec(service, model, version)
    body = await read_body(request, settings.max_body_bytes)
    body = _decompress(body, request.headers.get("content-encoding", "").strip().lower(), settings.max_body_bytes)
    req = codec.decode_request(body, request.headers.get(codec.HEADER_LENGTH), settings.max_json_depth)
    wanted = None if req.outputs is None else [oip.OutputRequest(o.name, o.classification) for o in req.outputs]
    binary = {o.name: o.binary for o in req.outputs or ()}
    result = await oip.infer(service, spec.name, version, req.inputs, wanted)
    head: dict[str, Any] = {"model_name": result.spec.name, "model_version": str(result.version)}
    if req.id is not None:
        head["id"] = req.id
    payload, header_len = codec.encode_response(
        head, [(name, datatype, arr, binary.get(name, req.binary_default)) for name, datatype, arr in result.outputs])
    headers = {} if header_len is None else {codec.HEADER_LENGTH: str(header_len)}
    encoding = _response_encoding(request.headers.get("accept-encoding", ""))
    if encoding is not None:
        payload = _compress(payload, encoding)
        headers["Content-Encoding"] = encoding
    return Response(payload, media_type="application/json" if header_len is None else "application/octet-stream",
                    headers=headers)


def _response_encoding(accept: str) -> str | None:
    """gzip or deflate when the caller accepts one (tritonclient's ``response_compression_algorithm``)."""
    offered = {}
    for part in accept.lower().split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        offered[name.strip()] = q
    for name in ("gzip", "deflate"):
        if offered.get(name, 0.0) > 0:
            return name
    return None


def _compress(payload: bytes, encoding: str) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    return deflater.compress(payload) + deflater.flush()


class IndexRequest(BaseModel):
    ready: bool = False


@router.post("/v2/repository/index", summary="Repository index: every model, its state and reason",
             responses=oip_errors(400))
async def repository_index(service: ServiceDep, body: IndexRequest | None = None) -> list[dict[str, str]]:
    return dataplane.repository_index(service.backend, ready_only=bool(body and body.ready))


async def control_model(service: InferenceService, settings: Settings, model: str, load: bool) -> None:
    """Load or unload one model: only with explicit model control (as Triton refuses it otherwise)."""
    if settings.model_control != "explicit":
        raise InvalidArgument(f"explicit model {'load' if load else 'unload'} is not allowed: the gateway runs "
                              f"with VISIONGATE_MODEL_CONTROL={settings.model_control}; set it to 'explicit'")
    await (service.backend.load(model) if load else service.backend.unload(model))


#: the gRPC transport answers from the same functions
spec_of, metadata_of, config_json = _spec, _metadata, _config


@router.post("/v2/repository/models/{model}/load", summary="Load or reload a model (model control: explicit)",
             response_class=Response, responses=oip_errors(400, 404))
async def load_model(model: str, service: ServiceDep, settings: SettingsDep) -> Response:
    await control_model(service, settings, model, load=True)
    return Response(status_code=200)


@router.post("/v2/repository/models/{model}/unload", summary="Unload a model (model control: explicit)",
             response_class=Response, responses=oip_errors(400, 404))
async def unload_model(model: str, service: ServiceDep, settings: SettingsDep) -> Response:
    await control_model(service, settings, model, load=False)
    return Response(status_code=200)


@router.get("/v2/models/{model}/stats", summary="Statistics of one model", responses=oip_errors(404))
async def model_stats(model: str, service: ServiceDep) -> dict[str, Any]:
    return dataplane.stats_json(await service.backend.stats(model))


@router.get("/v2/models/{model}/versions/{version}/stats", summary="Statistics of one model version",
            responses=oip_errors(404))
async def model_version_stats(model: str, version: int, service: ServiceDep) -> dict[str, Any]:
    return dataplane.stats_json(await service.backend.stats(model, version))
