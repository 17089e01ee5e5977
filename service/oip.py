"""The Open Inference Protocol's ``infer``, shared by its REST and gRPC transports (no wire format here).

Tensors in, tensors out, through ``InferenceService`` (one admission, the request's deadline):

- caller-made tensors are checked against the model and run as they are (``infer_tensors``);
- **encoded images**: a ``BYTES`` tensor named like the model's image input, one JPEG/PNG/WebP file per
  element (the batch is the element count, any shape), is decoded and pre-processed with the model's own
  parameters and the gateway's limits, then run (``prepare_and_run``); the outputs are the model's raw
  tensors, exactly as if the caller had sent the pre-processed pixels;
- the classification extension: an output asked for with ``classification: K`` comes back as ``BYTES``
  ``"score:index:label"`` strings, the top K per batch row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .api.v2_codec import V2_DTYPES, classification_strings, v2_datatype
from .backends.base import Tensors
from .errors import EmptyBody, InvalidArgument
from .inference import InferenceService
from .repository import ModelSpec

__all__ = ["InferResult", "OutputRequest", "accepts_encoded_images", "check_outputs", "infer"]


@dataclass(frozen=True)
class OutputRequest:
    name: str
    classification: int = 0  # top-K as strings when > 0


@dataclass(frozen=True)
class InferResult:
    spec: ModelSpec
    version: int
    #: (name, v2 datatype, array) in the order asked for (every output of the model when none was named)
    outputs: list[tuple[str, str, np.ndarray]]


def accepts_encoded_images(spec: ModelSpec) -> bool:
    """Whether the model takes encoded images on its image input: one pixel input of rank 3 and a batch axis."""
    return (len(spec.inputs) == 1 and spec.input.data_type != "TYPE_STRING" and len(spec.input.dims) == 3
            and spec.max_batch_size > 0)


def _encoded_images(spec: ModelSpec, inputs: Tensors, max_images: int) -> list[bytes] | None:
    """The image files of an encoded-image request, or None when the request carries tensors."""
    arr = inputs.get(spec.input.name)
    if arr is None or arr.dtype != np.object_ or len(inputs) != 1 or not accepts_encoded_images(spec):
        return None
    images = [v if isinstance(v, bytes) else bytes(v) for v in arr.reshape(-1)]
    if not images:
        raise InvalidArgument(f"input {spec.input.name!r}: a BYTES input of encoded images needs at least one")
    if len(images) > max_images:
        raise InvalidArgument(f"input {spec.input.name!r}: {len(images)} images in one request; the limit is "
                              f"{max_images} (VISIONGATE_MAX_IMAGES_PER_REQUEST)")
    if len(images) > spec.max_batch_size:
        raise InvalidArgument(f"input {spec.input.name!r}: {len(images)} images but model {spec.name!r} takes "
                              f"batches of at most {spec.max_batch_size}")
    for i, data in enumerate(images):
        if not data:
            raise EmptyBody(f"input {spec.input.name!r}: image {i} is empty")
    return images


def check_outputs(spec: ModelSpec, wanted: list[OutputRequest] | None) -> list[OutputRequest]:
    """The outputs to return (all when ``wanted`` is None); ``InvalidArgument`` for an unknown one."""
    known = {t.name for t in spec.outputs}
    if wanted is None:
        return [OutputRequest(t.name) for t in spec.outputs]
    for out in wanted:
        if out.name not in known:
            raise InvalidArgument(f"model {spec.name!r} has no output {out.name!r}; outputs: {sorted(known)}")
        if out.classification < 0:
            raise InvalidArgument(f"output {out.name!r}: classification must be a positive integer")
    return wanted


async def infer(service: InferenceService, model: str, version: int | None, inputs: Tensors,
                wanted: list[OutputRequest] | None) -> InferResult:
    spec = service.backend.describe(model)
    outputs = check_outputs(spec, wanted)
    images = _encoded_images(spec, inputs, service.settings.max_images_per_request)
    if images is not None:
        _, results, used = await service.prepare_and_run(spec, images, version)
    else:
        spec, used, results = await service.infer_tensors(spec.name, version, inputs)
    types = {t.name: v2_datatype(t.data_type) for t in spec.outputs}
    encoded: list[tuple[str, str, np.ndarray]] = []
    for out in outputs:
        arr = results[out.name]
        if out.classification > 0:
            labels = spec.labels_for(used)
            labels = labels if labels and arr.shape[-1] == len(labels) else None
            encoded.append((out.name, "BYTES", classification_strings(arr, out.classification, labels)))
        else:
            datatype = types[out.name]
            encoded.append((out.name, datatype, arr.astype(V2_DTYPES[datatype], copy=False)))
    return InferResult(spec, used, encoded)
