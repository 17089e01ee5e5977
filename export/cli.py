"""``visiongate export``: built-in models by name, or a user's checkpoint with --arch.

    visiongate export efficientnet_lite0                       # built-in, real weights
    visiongate export --defaults --missing-only
    visiongate export --arch resnet50 --checkpoint my.safetensors --labels labels.txt --name products
    visiongate export --arch srresnet --checkpoint g.pth --scale 4 --name sr_x4 --format tensorrt --fp16
    visiongate export --arch timm:convnext_tiny --checkpoint best.pth.tar --labels labels.txt --name parts
    visiongate export --arch torchvision:efficientnet_v2_s --random-weights --name smoke   # predicts nothing
    visiongate export --arch yolo --checkpoint best.pt --name boxes       # needs ultralytics (AGPL) installed
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Imported by ``visiongate.service.cli`` to build its parser: nothing at module level may import torch.
from .int8_cli import add_int8_arguments
from .sources.builtin import BUILTIN, DEFAULTS, OPTIONAL_DEFAULTS
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
    own.add_argument("--arch", help=f"architecture of --checkpoint: timm:<any timm model>, torchvision:<any "
                                    f"torchvision classifier, single-stage detector or segmenter>, "
                                    f"torchvision:maskrcnn_resnet50_fpn[_v2], "
                                    f"yolo (an Ultralytics .pt, detect or segment), "
                                    f"or {', '.join(ARCH_NAMES)} (resnet-rs = resnetrs50)")
    own.add_argument("--checkpoint", type=Path, help=".safetensors (preferred) or a weights-only .pth/.pt")
    own.add_argument("--random-weights", action="store_true",
                     help="timm:/torchvision: names without --checkpoint: export the random initialisation "
                          "(checks a deployment end to end; its predictions mean nothing)")
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
    proof = parser.add_argument_group("the proof on photos")
    proof.add_argument("--images", type=Path, metavar="DIR",
                       help="prove on your own photos (the image files in DIR) instead of the bundled ones")
    proof.add_argument("--allow-empty-detections", action="store_true",
                       help="publish a detector that finds nothing on the proof photos (nothing was compared)")
    proof.add_argument("--force", action="store_true",
                       help="publish a super-resolution model that is worse than bicubic on the proof photos")
    add_int8_arguments(parser)


def _print_result(name: str, result) -> None:  # type: ignore[no-untyped-def]
    print(f"{name}: version {result.version} written to {result.directory} "
          f"(parity {result.checked_what}: {', '.join(f'{k}={v:.3g}' for k, v in result.summary.items())})")


def _proof_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .parity import ProofOptions
    from .photos import user_photos

    return ProofOptions(photos=user_photos(args.images) if args.images else None,
                        allow_empty_detections=args.allow_empty_detections, force=args.force)


RANDOM_BANNER = """
!!! {name}: RANDOM WEIGHTS. No checkpoint was given and nothing can be downloaded here, so the model
!!! keeps its random initialisation: it serves, but its predictions mean nothing. Export your trained
!!! weights with --checkpoint FILE before anyone relies on this model.
"""


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


def _load_arch(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(default model name, LoadedModel) for ``--arch``."""
    from .sources.architectures import ArchOptions, load_architecture, read_labels_file, resolve
    from .sources.library import LibraryOptions, load_library_model, parse_arch

    labels = read_labels_file(args.labels) if args.labels else None
    size: tuple[int, int] | None = (args.input_size[0], args.input_size[1]) if args.input_size else None
    library = parse_arch(args.arch)
    if library is not None:
        lib, model = library
        loaded = load_library_model(lib, model, args.checkpoint, LibraryOptions(
            num_classes=args.num_classes, labels=labels, input_size=size))
        return model.split(".", 1)[0].replace("/", "_"), loaded
    arch = resolve(args.arch)
    return arch.name, load_architecture(arch.name, args.checkpoint, ArchOptions(
        num_classes=args.num_classes, labels=labels, input_size=size, scale=args.scale))


def _arch_usage_error(args: argparse.Namespace) -> str | None:
    if args.models or args.defaults:
        return "--arch exports one checkpoint: do not also name built-in models or --defaults"
    named = ":" in args.arch
    if args.checkpoint is not None and args.random_weights:
        return "give --checkpoint FILE or --random-weights, not both"
    if args.checkpoint is None and not args.random_weights:
        if named:
            return (f"--arch {args.arch} needs --checkpoint FILE (your trained weights), or --random-weights to "
                    f"export the random initialisation explicitly (no pretrained weights can be downloaded here)")
        return "--arch needs --checkpoint FILE"
    if args.random_weights and not named:
        return (f"--random-weights goes with timm:<name> or torchvision:<name> (for example "
                f"--arch torchvision:{args.arch}); --arch {args.arch} needs --checkpoint FILE")
    return None


def _run_arch(args: argparse.Namespace) -> int:
    from .checkpoints import CheckpointError
    from .parity import ParityError
    from .reexport import ConfigConflict
    from .variants import export_variant

    if args.arch.lower() in ("yolo", "ultralytics"):
        from .ultralytics_export import run_yolo

        return run_yolo(args)
    usage = _arch_usage_error(args)
    if usage:
        print(usage, file=sys.stderr)
        return 2
    library, _, arch_name = args.arch.rpartition(":")
    if library in ("", "torchvision") and arch_name in ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"):
        from .instance_export import run_instance

        return run_instance(args)
    try:
        if args.missing_only and args.name and (args.repository / args.name / "config.pbtxt").is_file():
            print(f"{args.name}: already in {args.repository}, skipped")
            return 0
        default_name, loaded = _load_arch(args)
        name = args.name or default_name
        if args.missing_only and (args.repository / name / "config.pbtxt").is_file():
            print(f"{name}: already in {args.repository}, skipped")
            return 0
        if loaded.random_weights:
            print(RANDOM_BANNER.format(name=name), file=sys.stderr)
        result = export_variant(loaded, name, args.repository, fmt=args.format, fp16=args.fp16,
                                max_batch_size=args.max_batch_size, progress=not args.no_progress,
                                proof=_proof_options(args))
    except (CheckpointError, ParityError, ConfigConflict, OSError, ValueError) as exc:
        print(f"{args.arch}: {exc}", file=sys.stderr)
        return 1
    _print_result(name, result)
    if loaded.random_weights:
        print(f"{name}: RANDOM WEIGHTS (see above): the proof shows the pipeline is exact, not that the model "
              "is any good", file=sys.stderr)
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
    if args.checkpoint or args.labels or args.name or args.random_weights:
        print("--checkpoint/--labels/--name/--random-weights go with --arch ARCH", file=sys.stderr)
        return 2
    from .parity import ParityError
    from .reexport import ConfigConflict
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
                                    max_batch_size=args.max_batch_size, progress=not args.no_progress,
                                    proof=_proof_options(args))
        except WeightsNotInstalled as exc:
            if args.defaults and name in OPTIONAL_DEFAULTS and name not in args.models:
                print(f"{name}: skipped, {exc}", file=sys.stderr)
                continue
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        except (ParityError, ConfigConflict, ValueError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        _print_result(name, result)
    return 0
