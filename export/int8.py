"""float32 ONNX -> static INT8 ONNX with onnxruntime's quantizer, in the formats measured fastest here.

Our graphs take uint8 NHWC pixels and normalise inside the graph (Transpose, Cast, Mul, Sub), and a
detector decodes its boxes inside the graph (Sigmoid, Exp, grid offsets). Quantization covers only
the network in between: from the first Conv to the last Conv/Gemm. The pixel preparation costs
almost nothing in float, and box decoding needs float precision (an INT8 grid offset moves boxes by
whole pixels). Which of the remaining layers stay float is an option measured on the held-back set
(``bench/bench_int8.py --formats``); the defaults below are what those measurements chose.

The formats (measured on AVX512-VNNI, one thread; see the README's INT8 section):
uint8 activations with int8 weights are the fast path (VNNI's u8 x s8 dot product); uint8 weights
fall off it entirely (7x slower than int8 weights), and int8 activations are slower than uint8.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from .calibration import ArrayReader

logger = logging.getLogger("visiongate.export")

#: ops that carry the network's arithmetic; quantization covers the graph up to the last of them
COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")

_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
_TYPES = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}


@dataclass(frozen=True)
class Int8Options:
    format: Literal["qdq", "qoperator"] = "qdq"
    activations: Literal["u8", "s8"] = "u8"
    weights: Literal["u8", "s8"] = "s8"
    per_channel: bool = True
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = 99.999
    #: leading compute layers (in graph order) kept float
    float_first: int = 0
    last_layer_float: bool = False
    depthwise_float: bool = False
    residual_add_float: bool = False
    #: nodes whose name contains one of these stay float (found by a sensitivity sweep)
    float_name_parts: tuple[str, ...] = ()
    reduce_range: bool = False
    #: onnxruntime ``extra_options`` as (key, value) pairs
    extra: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _ancestors(graph: onnx.GraphProto, nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """Names of ``nodes`` and every node upstream of them."""
    producer = _producers(graph)
    seen: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    return seen


def _descendants(graph: onnx.GraphProto, start: onnx.NodeProto) -> set[str]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    seen: set[str] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for out in node.output:
            stack.extend(consumers.get(out, ()))
    return seen


def float_nodes(model: onnx.ModelProto, options: Int8Options) -> list[str]:
    """Nodes left in float: pixel preparation before the first compute op, everything after the
    last compute ops (a detector's box decoding, a classifier's nothing), and optionally the
    first/last compute layers themselves."""
    graph = model.graph
    for i, node in enumerate(graph.node):
        if not node.name:
            node.name = f"_node_{i}"
    compute = [n for n in graph.node if n.op_type in COMPUTE_OPS]
    if not compute:
        raise ValueError("the graph has no Conv/Gemm/MatMul to quantize")
    names = {n.name for n in compute}
    # the last compute ops: no other compute op lies downstream (a detector's heads, a classifier's Gemm)
    last = [n for n in compute if not (_descendants(graph, n) - {n.name}) & names]
    first = compute[0]
    quantized = (_ancestors(graph, last) & _descendants(graph, first))
    quantized -= {n.name for n in compute[:options.float_first]}
    if options.last_layer_float:
        quantized -= {n.name for n in last}
    if options.depthwise_float:
        quantized -= {n.name for n in compute if any(a.name == "group" and a.i > 1 for a in n.attribute)}
    if options.float_name_parts:
        quantized -= {n for n in quantized if any(part in n for part in options.float_name_parts)}
    if options.residual_add_float:
        quantized -= {n.name for n in graph.node if n.op_type == "Add"}
    return [n.name for n in graph.node if n.name not in quantized]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer logs a line per adjusted weight scale on the root logger at INFO."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(fp32: Path, target: Path, calibration: np.ndarray, options: Int8Options = Int8Options(),
             input_name: str = "image") -> dict[str, Any]:
    """Write the INT8 model of ``fp32`` to ``target``, calibrated on ``calibration`` (uint8 NHWC)."""
    with tempfile.TemporaryDirectory(prefix="visiongate-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # onnxruntime's recommended step: graph optimisation (folds BatchNorm etc.) and shape inference
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=False)
        except Exception:
            logger.info("symbolic shape inference failed for %s; using ONNX shape inference only", fp32)
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        keep_float = float_nodes(model, options)
        onnx.save(model, str(prepared))
        extra: dict[str, Any] = dict(options.extra)
        if options.method == "percentile":
            extra["CalibPercentile"] = options.percentile
        with _quiet_root_logger():
            quantize_static(
                str(prepared), str(target), ArrayReader(input_name, calibration),
                quant_format=_FORMATS[options.format], per_channel=options.per_channel,
                reduce_range=options.reduce_range, activation_type=_TYPES[options.activations],
                weight_type=_TYPES[options.weights], nodes_to_exclude=keep_float,
                calibrate_method=_METHODS[options.method], extra_options=extra,
            )
    quantized = sum(1 for n in onnx.load(str(target)).graph.node
                    if n.op_type in ("QLinearConv", "QLinearMatMul", "QuantizeLinear", "ConvInteger"))
    return {"options": options.describe(), "float_nodes": len(keep_float), "quantized_ops": quantized,
            "calibration_images": len(calibration)}


# ------------------------------------------------------------------ the export with its proof
@dataclass(frozen=True)
class Thresholds:
    #: top-1 agreement with float32 over held-back images whose float32 top-1 is decided
    min_top1: float = 0.97
    #: a float32 top-1 is decided when its probability exceeds the runner-up's by this much
    decided_margin: float = 0.1
    min_box_recall: float = 0.95


class Int8ProofFailed(RuntimeError):
    pass


def default_options(task: str) -> Int8Options:
    """What the measurements chose (README, INT8): QDQ, uint8 activations, int8 per-channel weights,
    MinMax. The last compute layers stay float, and so do a classifier's first three (stem and first
    depthwise-separable block of Lite0: ~4% of its arithmetic, KL divergence 0.080 -> 0.019) and a
    detector's first."""
    return Int8Options(float_first=3 if task == "classify" else 1, last_layer_float=True)
