"""Caller-made tensors checked against a model, as Triton checks them (names, datatypes, shapes)."""

from __future__ import annotations

import numpy as np

from . import dtypes
from .errors import InvalidArgument
from .repository import ModelSpec


def check_inputs(spec: ModelSpec, inputs: dict[str, np.ndarray]) -> int:
    """Raise ``InvalidArgument`` naming what does not match; return the request's item count
    (its batch size, or 1 for a model without a batch axis)."""
    expected = {t.name: t for t in spec.inputs}
    if set(inputs) != set(expected):
        raise InvalidArgument(f"model {spec.name!r} takes inputs {sorted(expected)}, got {sorted(inputs)}")
    batch_sizes = set()
    for name, arr in inputs.items():
        t = expected[name]
        if arr.dtype != t.dtype:
            try:
                got = dtypes.from_numpy(arr.dtype).v2
            except KeyError:
                got = str(arr.dtype)
            raise InvalidArgument(f"input {name!r}: datatype {got} but model {spec.name!r} takes "
                                  f"{dtypes.v2_datatype(t.data_type)}")
        shape = list(arr.shape)
        if spec.max_batch_size > 0:
            if not shape or not 1 <= shape[0] <= spec.max_batch_size:
                raise InvalidArgument(f"input {name!r}: batch size {shape[0] if shape else None} is not in "
                                      f"1..{spec.max_batch_size} (max_batch_size of {spec.name!r})")
            batch_sizes.add(shape[0])
            shape = shape[1:]
        if len(shape) != len(t.dims) or any(d not in (-1, s) for d, s in zip(t.dims, shape, strict=True)):
            full = ([-1] if spec.max_batch_size > 0 else []) + list(t.dims)
            raise InvalidArgument(f"input {name!r}: shape {list(arr.shape)} does not match {full}")
    if len(batch_sizes) > 1:
        raise InvalidArgument(f"inputs disagree on the batch size: {sorted(batch_sizes)}")
    return batch_sizes.pop() if batch_sizes else 1
