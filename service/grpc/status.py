"""The gateway's one error tree as gRPC statuses: the code from ``errors.GRPC_STATUS``, the public
message, and ``retry-after`` (whole seconds) in the trailing metadata of every UNAVAILABLE."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from ..errors import VisionGateError, as_visiongate_error, grpc_status, retry_after


@dataclass(frozen=True)
class GrpcError:
    code: grpc.StatusCode
    message: str
    trailers: tuple[tuple[str, str], ...]


def to_grpc(exc: BaseException) -> tuple[VisionGateError, GrpcError]:
    """Any exception as the tree's error and the status it is answered with."""
    error = as_visiongate_error(exc)
    code = grpc.StatusCode[grpc_status(error)]
    seconds = retry_after(error)
    trailers = (("retry-after", str(seconds)),) if seconds is not None else ()
    return error, GrpcError(code, error.message, trailers)
