"""The one table of tensor data types: Triton's ``TYPE_*`` (model config) <-> v2 wire names (``FP32``)
<-> numpy <-> ONNX Runtime's type strings (``tensor(float)``).

``BYTES``/``TYPE_STRING`` is an object array of ``bytes``; ``BF16`` has no numpy dtype and only
travels as raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DType:
    triton: str  # TYPE_FP32
    v2: str  # FP32
    numpy: np.dtype[Any] | None
    onnx: str  # tensor(float)


TABLE: tuple[DType, ...] = (
    DType("TYPE_BOOL", "BOOL", np.dtype(np.bool_), "tensor(bool)"),
    DType("TYPE_UINT8", "UINT8", np.dtype(np.uint8), "tensor(uint8)"),
    DType("TYPE_UINT16", "UINT16", np.dtype(np.uint16), "tensor(uint16)"),
    DType("TYPE_UINT32", "UINT32", np.dtype(np.uint32), "tensor(uint32)"),
    DType("TYPE_UINT64", "UINT64", np.dtype(np.uint64), "tensor(uint64)"),
    DType("TYPE_INT8", "INT8", np.dtype(np.int8), "tensor(int8)"),
    DType("TYPE_INT16", "INT16", np.dtype(np.int16), "tensor(int16)"),
    DType("TYPE_INT32", "INT32", np.dtype(np.int32), "tensor(int32)"),
    DType("TYPE_INT64", "INT64", np.dtype(np.int64), "tensor(int64)"),
    DType("TYPE_FP16", "FP16", np.dtype(np.float16), "tensor(float16)"),
    DType("TYPE_FP32", "FP32", np.dtype(np.float32), "tensor(float)"),
    DType("TYPE_FP64", "FP64", np.dtype(np.float64), "tensor(double)"),
    DType("TYPE_STRING", "BYTES", np.dtype(np.object_), "tensor(string)"),
    DType("TYPE_BF16", "BF16", None, "tensor(bfloat16)"),
)

BY_TRITON: dict[str, DType] = {d.triton: d for d in TABLE}
BY_V2: dict[str, DType] = {d.v2: d for d in TABLE}
BY_ONNX: dict[str, DType] = {d.onnx: d for d in TABLE}
#: v2 datatype name -> numpy dtype, for the types numpy holds
V2_NUMPY: dict[str, np.dtype[Any]] = {d.v2: d.numpy for d in TABLE if d.numpy is not None}


def numpy_dtype(triton_type: str) -> np.dtype[Any]:
    """``TYPE_FP32`` -> ``float32``; KeyError for an unknown name or one numpy cannot hold (BF16)."""
    found = BY_TRITON[triton_type].numpy
    if found is None:
        raise KeyError(triton_type)
    return found


def v2_datatype(triton_type: str) -> str:
    """``TYPE_FP32`` (model config) -> ``FP32`` (v2 wire); ``TYPE_STRING`` -> ``BYTES``."""
    return BY_TRITON[triton_type].v2


def triton_type(v2: str) -> str:
    """``FP32`` -> ``TYPE_FP32``; ``BYTES`` -> ``TYPE_STRING``."""
    return BY_V2[v2].triton


def from_numpy(dtype: np.dtype[Any]) -> DType:
    """The row for a numpy dtype (byte order ignored); KeyError when none fits."""
    wanted = np.dtype(dtype).newbyteorder("=")
    for row in TABLE:
        if row.numpy is not None and row.numpy == wanted:
            return row
    raise KeyError(str(dtype))


def from_onnx(onnx_type: str) -> DType:
    """``tensor(float)`` (``NodeArg.type`` of onnxruntime) -> its row; KeyError for others."""
    return BY_ONNX[onnx_type]
