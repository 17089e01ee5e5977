"""Backends run model inference: the embedded onnxruntime runtime and a Triton client."""

from .base import Backend

__all__ = ["Backend"]
