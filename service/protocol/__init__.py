"""Triton's protocol schema (``model_config.proto``, ``grpc_service.proto``, ``health.proto``, server
2.51 / branch r24.10 of triton-inference-server/common) and the modules protoc generates from it.

Regenerate with ``deploy/gen-protos.sh``; never edit the ``*_pb2*.py`` files by hand.
"""
