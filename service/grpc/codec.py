"""Tensors of the OIP's gRPC messages <-> numpy: ``raw_input_contents`` or typed ``contents`` in,
``raw_output_contents`` out (as Triton answers), and the requested outputs with their parameters.

Raw contents use the binary layout of the REST binary extension (little-endian row-major; BYTES as
``<uint32 length><bytes>`` elements), so ``v2_codec`` reads and writes both. Raises only ``InvalidArgument``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..api import v2_codec as codec
from ..backends.base import Tensors
from ..errors import InvalidArgument
from ..oip import OutputRequest
from ..protocol import grpc_service_pb2 as pb

#: v2 datatype -> the ``InferTensorContents`` field that carries it (FP16/BF16: raw contents only)
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in raw)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name!r}: shape must be non-negative integers, got {list(shape)}")
    return shape


def _from_contents(tensor: Any, shape: tuple[int, ...]) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(f"input {name!r}: {datatype} data must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    count = int(np.prod(shape)) if shape else 1
    if len(values) != count:
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} needs {count} values, got {len(values)} "
                              f"in contents.{field}")
    if datatype == "BYTES":
        return np.array([*values, b""], dtype=np.object_)[:-1].reshape(shape)
    dtype = codec.V2_DTYPES[datatype]
    try:
        # int_contents carries INT8/16 and uint_contents UINT8/16 widened to 32 bits: range-check the narrowing
        wide = np.asarray(values)
        arr = wide.astype(dtype)
        if dtype.kind in "iu" and not np.array_equal(arr, wide):
            raise OverflowError(f"values out of the {datatype} range")
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(f"input {name!r}: contents cannot be read as {datatype}: {exc}") from exc
    return arr.reshape(shape)


def decode_inputs(request: pb.ModelInferRequest) -> Tensors:
    """The request's input tensors by name. Raw contents, when present, carry every input, in order."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: "
                              "send every input raw, or none")
    if not request.inputs:
        raise InvalidArgument("the request has no inputs")
    inputs: Tensors = {}
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        if tensor.datatype not in codec.V2_DTYPES:
            raise InvalidArgument(f"input {name!r}: datatype {tensor.datatype!r} is not one of "
                                  f"{sorted(codec.V2_DTYPES)}")
        if name in inputs:
            raise InvalidArgument(f"input {name!r} is given twice")
        shape = _shape(tensor.shape, name)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(f"input {name!r} has both contents and raw_input_contents")
            inputs[name] = codec.from_binary(raw[i], tensor.datatype, shape, name)
        else:
            inputs[name] = _from_contents(tensor, shape)
    return inputs


def requested_outputs(request: pb.ModelInferRequest) -> list[OutputRequest] | None:
    """The outputs asked for (None: all), with the classification extension's top-K."""
    if not request.outputs:
        return None
    wanted = []
    for out in request.outputs:
        k = 0
        param = out.parameters.get("classification")
        if param is not None:
            kind = param.WhichOneof("parameter_choice")
            if kind not in ("int64_param", "uint64_param") or getattr(param, kind) <= 0:
                raise InvalidArgument(f"output {out.name!r}: classification must be a positive integer")
            k = int(getattr(param, kind))
        wanted.append(OutputRequest(out.name, k))
    return wanted


def encode_response(response: pb.ModelInferResponse, outputs: list[tuple[str, str, np.ndarray]]) -> None:
    """Fill ``response.outputs`` and ``raw_output_contents`` (one entry per output, in order)."""
    for name, datatype, arr in outputs:
        response.outputs.add(name=name, datatype=datatype, shape=list(arr.shape))
        response.raw_output_contents.append(codec.to_binary(arr, datatype))
