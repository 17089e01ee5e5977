"""ONNX -> TensorRT engine (``model.plan``) for Triton's ``tensorrt_plan`` platform, and running one.

An engine is built for one GPU model and one TensorRT version: build it on (a GPU like) the
serving machine. The network keeps the ONNX graph's interface (``image: uint8 [N, H, W, 3]``, the
same outputs), so the gateway and its config parameters do not change. One optimisation profile:
batch min 1, opt = max = ``max_batch_size`` (dynamic batching fills batches under load); for
super-resolution the spatial axes range from ``MIN_SIDE`` to the model's tile size.

Without a CUDA device or the ``tensorrt`` package nothing here can work: ``unavailable_reason``
says why, and the CLI checks it before loading any weights.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .sources.base import ModelCard

MIN_SIDE = 8
WORKSPACE_BYTES = 2 << 30
INSTALL_HINT = "pip install tensorrt-cu12 (matching the CUDA of the installed torch)"


class TensorRTUnavailable(RuntimeError):
    """TensorRT cannot run here (no CUDA device, or the package is missing)."""


def unavailable_reason() -> str | None:
    """Why a TensorRT engine cannot be built on this machine, or ``None`` when it can."""
    reasons = []
    if importlib.util.find_spec("tensorrt") is None:
        reasons.append(f"the tensorrt Python package is not installed ({INSTALL_HINT})")
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        reasons.append("no CUDA device is visible (a TensorRT engine is built on, and for, an NVIDIA GPU)")
    return "; ".join(reasons) or None


def require_tensorrt() -> None:
    reason = unavailable_reason()
    if reason:
        raise TensorRTUnavailable(f"cannot build a TensorRT engine: {reason}")


def profile_shapes(card: ModelCard, max_batch_size: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of the ``image`` input, NHWC."""
    if card.input_size is not None:
        h, w = card.input_size
        return (1, h, w, 3), (max_batch_size, h, w, 3), (max_batch_size, h, w, 3)
    side = int(card.extra.get("tile_size", "256"))
    return (1, MIN_SIDE, MIN_SIDE, 3), (max_batch_size, side, side, 3), (max_batch_size, side, side, 3)


def build_plan(onnx_path: Path, plan_path: Path, card: ModelCard, *, max_batch_size: int, fp16: bool) -> dict[str, str]:
    """Build ``plan_path`` from ``onnx_path``; returns facts for the parity report (versions, GPU)."""
    require_tensorrt()
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 matmuls would cost ~1e-3 accuracy
    profile = builder.create_optimization_profile()
    low, opt, high = profile_shapes(card, max_batch_size)
    profile.set_shape("image", low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    Path(plan_path).write_bytes(bytes(serialized))
    return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(0),
            "precision": "fp16" if fp16 else "fp32", "profile": f"min {low} opt {opt} max {high}"}


def run_plan(plan_path: Path, image: np.ndarray, output_names: list[str], max_batch_size: int) -> list[np.ndarray]:
    """Run the engine on uint8 ``[N, H, W, 3]`` (in chunks of ``max_batch_size``); outputs as numpy."""
    require_tensorrt()
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(plan_path).read_bytes())
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # torch leaves Stream.__new__ unannotated
    chunks: list[list[np.ndarray]] = [[] for _ in output_names]
    for start in range(0, len(image), max_batch_size):
        with torch.cuda.stream(stream):  # inputs, outputs and the engine all on one stream
            batch = torch.from_numpy(np.ascontiguousarray(image[start:start + max_batch_size])).cuda()
            context.set_input_shape("image", tuple(batch.shape))
            context.set_tensor_address("image", batch.data_ptr())
            outputs = []
            for name in output_names:
                dtype = torch.from_numpy(np.zeros(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
                out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
                context.set_tensor_address(name, out.data_ptr())
                outputs.append(out)
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        for bucket, out in zip(chunks, outputs, strict=True):
            bucket.append(out.float().cpu().numpy())
    return [np.concatenate(bucket) for bucket in chunks]
