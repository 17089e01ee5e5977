"""Tensor encoding of the Open Inference Protocol (v2) over HTTP: JSON tensors and the binary-data extension.

A v2 request body is a JSON header, optionally followed by raw tensor bytes; the
``Inference-Header-Content-Length`` header says where the JSON ends. An input carried in binary has
``parameters.binary_data_size`` instead of ``data``; binary inputs follow the JSON in input order.
Responses use the same layout. BYTES tensors are, in binary, a sequence of
``<uint32 little-endian length><bytes>`` elements; numeric tensors are little-endian row-major.

Everything here is pure (bytes and numpy in, bytes and numpy out) and raises only ``InvalidArgument``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import dtypes
from ..errors import InvalidArgument, NonFiniteOutput
from .json_body import DEFAULT_MAX_DEPTH, load_json

HEADER_LENGTH = "Inference-Header-Content-Length"

# the one dtype table (re-exported: the v2 layers name their types by it)
V2_DTYPES = dtypes.V2_NUMPY
v2_datatype = dtypes.v2_datatype


@dataclass
class RequestedOutput:
    name: str
    binary: bool
    classification: int = 0  # top-K as "score:index:label" strings when > 0


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None  # None: every output, with ``binary_default``
    binary_default: bool
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def _bytes_elements(raw: bytes, count: int, name: str) -> np.ndarray:
    items: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(raw):
            raise InvalidArgument(f"input {name!r}: BYTES data ends inside an element length")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise InvalidArgument(f"input {name!r}: BYTES element runs past the data")
        items.append(raw[pos:pos + n])
        pos += n
    if pos != len(raw):
        raise InvalidArgument(f"input {name!r}: {len(raw) - pos} bytes left after {count} BYTES elements")
    return np.array([*items, b""], dtype=np.object_)[:-1]  # the sentinel keeps numpy from making 2-D arrays


def _params(raw: Any, where: str) -> dict[str, Any]:
    """A ``parameters`` field: absent, or a JSON object (never a list or a string)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: parameters must be a JSON object, got {type(raw).__name__}")
    return raw


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    # a JSON true is a Python bool, which is an int: refuse it rather than read it as 1
    if not isinstance(raw, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                            for d in raw):
        raise InvalidArgument(f"input {name!r}: shape must be a list of non-negative integers, got {raw!r}")
    return tuple(raw)


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = int(np.prod(shape)) if shape else 1
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=np.object_).reshape(-1)
            arr = np.array([v.encode() if isinstance(v, str) else bytes(v) for v in flat] + [b""],
                           dtype=np.object_)[:-1]
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                arr = np.asarray(data, dtype=V2_DTYPES[datatype]).reshape(-1)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                # 1e39 as FP32 overflows to inf without a word; JSON has no NaN/Infinity either
                raise InvalidArgument(f"input {name!r}: values must be finite {datatype} numbers "
                                      f"(a value overflowed or is NaN/Infinity)")
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidArgument(f"input {name!r}: data cannot be read as {datatype}: {exc}") from exc
    if arr.size != count:
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} needs {count} values, got {arr.size}")
    return arr.reshape(shape)


def from_binary(raw: bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """One tensor from its binary form (little-endian row-major; BYTES as length-prefixed elements)."""
    count = int(np.prod(shape)) if shape else 1
    if datatype == "BYTES":
        return _bytes_elements(raw, count, name).reshape(shape)
    dtype = V2_DTYPES[datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} of {datatype} needs "
                              f"{count * dtype.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def split_body(body: bytes, header_length: str | None,
               max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[dict[str, Any], bytes]:
    """The JSON header (a dict) and the binary tail of a request body."""
    if header_length is None:
        head, tail = body, b""
    else:
        # str.isdigit() accepts "²" and other digits int() refuses: only ASCII digits are a length
        if not header_length.strip().isascii() or not header_length.strip().isdigit() \
                or int(header_length) > len(body):
            raise InvalidArgument(f"{HEADER_LENGTH} is {header_length!r} but the body has {len(body)} bytes")
        n = int(header_length)
        head, tail = body[:n], body[n:]
    doc = load_json(head, max_depth, "the request header")
    if not isinstance(doc, dict):
        raise InvalidArgument("the request header must be a JSON object")
    return doc, tail


def decode_request(body: bytes, header_length: str | None, max_depth: int = DEFAULT_MAX_DEPTH) -> InferRequest:
    doc, tail = split_body(body, header_length, max_depth)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("the request needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidArgument("every input needs a 'name'")
        name = raw["name"]
        datatype = raw.get("datatype")
        if datatype not in V2_DTYPES:
            raise InvalidArgument(f"input {name!r}: datatype {datatype!r} is not one of {sorted(V2_DTYPES)}")
        if name in inputs:
            raise InvalidArgument(f"input {name!r} is given twice")
        shape = _shape(raw.get("shape"), name)
        params = _params(raw.get("parameters"), f"input {name!r}")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(tail):
                raise InvalidArgument(f"input {name!r}: binary_data_size {size!r} runs past the body")
            inputs[name] = from_binary(tail[offset:offset + size], datatype, shape, name)
            offset += size
        elif "data" in raw:
            inputs[name] = _from_json(raw["data"], datatype, shape, name)
        else:
            raise InvalidArgument(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    if offset != len(tail):
        raise InvalidArgument(f"{len(tail) - offset} bytes of binary data are not claimed by any input")
    request_params = _params(doc.get("parameters"), "the request")
    binary_default = bool(request_params.get("binary_data_output", False))
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise InvalidArgument("'outputs' must be a list")
        outputs = []
        for raw in doc["outputs"]:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise InvalidArgument("every requested output needs a 'name'")
            params = _params(raw.get("parameters"), f"output {raw['name']!r}")
            k = params.get("classification", 0)
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise InvalidArgument(f"output {raw['name']!r}: classification must be a positive integer")
            outputs.append(RequestedOutput(raw["name"], bool(params.get("binary_data", binary_default)), k))
    rid = doc.get("id")
    return InferRequest(inputs, outputs, binary_default, str(rid) if rid is not None else None, request_params)


def classification_strings(values: np.ndarray, k: int, labels: tuple[str, ...] | None) -> np.ndarray:
    """Triton's classification extension: per batch row, the top ``k`` as ``"score:index[:label]"``.

    values: [N, C] (or [C] for models without a batch axis) -> object array [N, k] (or [k]) of bytes.
    Scores are the raw output values printed like C's ``%f``; ties keep the lower index first.
    """
    rows = values.reshape(1, -1) if values.ndim == 1 else values.reshape(values.shape[0], -1)
    k = min(k, rows.shape[1])
    out = []
    for row in rows:
        order = np.argsort(-row.astype(np.float64), kind="stable")[:k]
        strings = []
        for i in order:
            text = f"{float(row[i]):f}:{int(i)}"
            if labels is not None and i < len(labels):
                text += f":{labels[i]}"
            strings.append(text.encode())
        out.append(strings)
    arr = np.empty((len(out), k), dtype=np.object_)
    for r, strings in enumerate(out):
        for c, s in enumerate(strings):
            arr[r, c] = s
    return arr[0] if values.ndim == 1 else arr


def _bytes_payload(arr: np.ndarray) -> bytes:
    parts = []
    for v in arr.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(struct.pack("<I", len(b)) + b)
    return b"".join(parts)


def to_binary(arr: np.ndarray, datatype: str) -> bytes:
    """One tensor in its binary form (the inverse of ``from_binary``)."""
    if datatype == "BYTES":
        return _bytes_payload(arr)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def encode_response(head: dict[str, Any], outputs: list[tuple[str, str, np.ndarray, bool]]
                    ) -> tuple[bytes, int | None]:
    """``head`` plus outputs ``(name, datatype, array, binary)`` -> (body, JSON length or None).

    The JSON length is returned (for ``Inference-Header-Content-Length``) only when some output is binary.
    """
    entries, blobs = [], []
    for name, datatype, arr, binary in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            blob = to_binary(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                             for v in arr.reshape(-1)]
        else:
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise NonFiniteOutput(f"output {name!r} holds NaN or infinite values, which JSON cannot "
                                      f"carry; ask for it as binary data (binary_data: true)")
            entry["data"] = arr.reshape(-1).tolist()
        entries.append(entry)
    header = json.dumps({**head, "outputs": entries}, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
