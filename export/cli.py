"""``visiongate export``: built-in models by name, or a user's checkpoint with --arch.

    visiongate export efficientnet_lite0                       # built-in, real weights
    visiongate export --defaults --missing-only
    visiongate export --arch resnet50 --checkpoint my.safetensors --labels labels.txt --name products
    visiongate export --arch srresnet --checkpoint g.pth --scale 4 --name sr_x4 --format tensorrt --fp16
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Imported by ``service.cli`` to build its parser: nothing at module level may import torch.
from .int8_cli import add_int8_arguments
from .sources.builtin import BUILTIN, DEFAULTS
from .sources.errors import WeightsNotInstalled

#: ``--arch`` choices (the keys of ``sources.architectures.ARCHITECTURES``, listed here without torch)
ARCH_NAMES = ("efficientnet_b0", "espcn", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet50",
              "resnetrs50", "retinanet_resnet50_fpn", "srresnet", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", help=f"built-in model names: {', '.join(sorted(BUILTIN))}")
    parser.add_argument("--defaults", action="store_true", help=f"export the defaults: {', '.join(DEFAULTS)}")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--max-batch-size", type=int, default=None)
    parser.add_argument("--missing-only", action="store_true", help="skip models already in the repository")
    parser.add_argument("--no-progress", action="store_true")
    own = parser.add_argument_group("your own checkpoint")
    own.add_argument("--arch", help=f"architecture of --checkpoint: {', '.join(ARCH_NAMES)} (resnet-rs = resnetrs50)")
    own.add_argument("--checkpoint", type=Path, help=".safetensors (preferred) or a weights-only .pth/.pt")
    own.add_argument("--labels", type=Path, help="class names, one per line (SSD: without the background class, "
                                                  "or with it as the first line)")
    own.add_argument("--name", help="model name in the repository (default: the architecture)")
    own.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="network input size")
    own.add_argument("--num-classes", type=int, help="classes the checkpoint was trained with "
                                                      "(torchvision convention; default: read from the checkpoint)")
    own.add_argument("--scale", type=int, help="super-resolution factor (default: read from the checkpoint)")
    parser.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx",
                        help="tensorrt needs an NVIDIA GPU and the tensorrt package")
    parser.add_argument("--fp16", action="store_true", help="float16 weights/compute (ONNX or TensorRT)")
    add_int8_arguments(parser)


def _print_result(name: str, result) -> None:  # type: ignore[no-untyped-def]
    print(f"{name}: version {result.version} written to {result.directory} "
          f"(parity: {', '.join(f'{k}={v:.3g}' for k, v in result.report.metrics.items())})")


def _fail_fast(args: argparse.Namespace) -> str | None:
    """A reason to stop before loading any weights, or None."""
    if args.format == "tensorrt":
        from .tensorrt import unavailable_reason

        reason = unavailable_reason()
        if reason:
            return f"cannot export --format tensorrt: {reason}"
    if args.fp16 and args.format == "onnx":
        import importlib.util

        if importlib.util.find_spec("onnxconverter_common") is None:
            return "--fp16 ONNX needs the onnxconverter-common package (pip install onnxconverter-common)"
    return None


def _run_arch(args: argparse.Namespace) -> int:
    from .checkpoints import CheckpointError
    from .parity import ParityError
    from .sources.architectures import ArchOptions, load_architecture, read_labels_file, resolve
    from .variants import export_variant

    if args.models or args.defaults:
        print("--arch exports one checkpoint: do not also name built-in models or --defaults", file=sys.stderr)
        return 2
    if args.checkpoint is None:
        print("--arch needs --checkpoint FILE", file=sys.stderr)
        return 2
    try:
        arch = resolve(args.arch)
        name = args.name or arch.name
        if args.missing_only and (args.repository / name / "config.pbtxt").is_file():
            print(f"{name}: already in {args.repository}, skipped")
            return 0
        opts = ArchOptions(
            num_classes=args.num_classes,
            labels=read_labels_file(args.labels) if args.labels else None,
            input_size=tuple(args.input_size) if args.input_size else None,  # type: ignore[arg-type]
            scale=args.scale,
        )
        loaded = load_architecture(arch.name, args.checkpoint, opts)
        result = export_variant(loaded, name, args.repository, fmt=args.format, fp16=args.fp16,
                                max_batch_size=args.max_batch_size, progress=not args.no_progress)
    except (CheckpointError, ParityError, OSError, ValueError) as exc:
        print(f"{args.arch}: {exc}", file=sys.stderr)
        return 1
    _print_result(name, result)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.int8:
        from .int8_cli import run_with_int8

        return run_with_int8(args, _run_fp32)
    return _run_fp32(args)


def _run_fp32(args: argparse.Namespace) -> int:
    reason = _fail_fast(args)
    if reason:
        print(reason, file=sys.stderr)
        return 1
    if args.arch:
        return _run_arch(args)
    if args.checkpoint or args.labels or args.name:
        print("--checkpoint/--labels/--name go with --arch ARCH", file=sys.stderr)
        return 2
    from .parity import ParityError
    from .variants import export_variant

    names = list(args.models) + (list(DEFAULTS) if args.defaults else [])
    if not names:
        print("name a model to export, or --defaults, or --arch ARCH --checkpoint FILE; built-in: "
              + ", ".join(sorted(BUILTIN)), file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        print(f"unknown model(s) {unknown}; built-in: {', '.join(sorted(BUILTIN))}", file=sys.stderr)
        return 2
    for name in dict.fromkeys(names):
        if args.missing_only and (args.repository / name / "config.pbtxt").is_file():
            print(f"{name}: already in {args.repository}, skipped")
            continue
        try:
            loaded = BUILTIN[name]()
            result = export_variant(loaded, name, args.repository, fmt=args.format, fp16=args.fp16,
                                    max_batch_size=args.max_batch_size, progress=not args.no_progress)
        except (WeightsNotInstalled, ParityError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        _print_result(name, result)
    return 0
