"""``visiongate export ... --int8``: the flags, and the step after the float32 export.

Kept apart from ``cli.py`` and light at import: ``visiongate.service.cli`` builds its parser from these, so
nothing here imports onnxruntime or torch before an export actually runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def add_int8_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("INT8 (classifiers and detectors)")
    group.add_argument("--int8", action="store_true",
                       help="also write <name>_int8, quantized from the float32 model and published only "
                            "if its accuracy proof on held-back real photographs passes")
    group.add_argument("--calibration-images", type=Path, metavar="DIR",
                       help="calibrate on these images instead of the built-in photographs")
    group.add_argument("--int8-min-top1", type=float, default=0.97, metavar="SHARE",
                       help="classifiers: least top-1 agreement with float32 on held-back photographs whose "
                            "float32 top-1 is decided (default 0.97)")
    group.add_argument("--int8-min-box-recall", type=float, default=0.95, metavar="SHARE",
                       help="detectors: least recall of float32's boxes at IoU 0.5 (default 0.95)")


def _names(args: argparse.Namespace) -> list[str]:
    if args.arch:
        from .sources.architectures import resolve

        return [args.name or resolve(args.arch).name]
    from .sources.builtin import DEFAULTS

    return list(dict.fromkeys(list(args.models) + (list(DEFAULTS) if args.defaults else [])))


def run_with_int8(args: argparse.Namespace, export_fp32: Callable[[argparse.Namespace], int]) -> int:
    """The float32 export as usual, then ``<name>_int8`` of each classifier/detector it covers."""
    if args.fp16 or args.format != "onnx":
        print("--int8 quantizes the float32 ONNX model: drop --fp16 / --format tensorrt", file=sys.stderr)
        return 2
    if args.calibration_images is not None and not args.calibration_images.is_dir():
        print(f"--calibration-images {args.calibration_images}: not a folder", file=sys.stderr)
        return 2
    code = export_fp32(args)
    if code != 0:
        return code
    from visiongate.service.repository import read_model

    from .int8 import Int8ProofFailed, Thresholds
    from .int8_variant import SUFFIX, export_int8
    from .photo_sets import PhotoSetUnavailable

    thresholds = Thresholds(min_top1=args.int8_min_top1, min_box_recall=args.int8_min_box_recall)
    for name in _names(args):
        if read_model(args.repository / name).spec.task not in ("classify", "detect"):
            print(f"{name}: no INT8 variant for this task, skipped")
            continue
        if args.missing_only and (args.repository / f"{name}{SUFFIX}" / "config.pbtxt").is_file():
            print(f"{name}{SUFFIX}: already in {args.repository}, skipped")
            continue
        try:
            result = export_int8(args.repository, name, calibration_dir=args.calibration_images,
                                 thresholds=thresholds)
        except (Int8ProofFailed, PhotoSetUnavailable, ValueError, OSError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        print(f"{result.name}: version {result.version} written to {result.directory} "
              f"(INT8 proof: {', '.join(f'{k}={v:.3g}' for k, v in result.metrics.items())})")
    return 0
