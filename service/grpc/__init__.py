"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``, as Triton serves it)."""

from .server import GrpcServer, start_grpc

__all__ = ["GrpcServer", "start_grpc"]
