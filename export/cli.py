"""``visiongate export``: built-in models by name, or a user's checkpoint with --arch."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .parity import ParityError
from .pipeline import export_model
from .sources.builtin import BUILTIN, DEFAULTS
from .sources.errors import WeightsNotInstalled


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", help=f"built-in model names: {', '.join(sorted(BUILTIN))}")
    parser.add_argument("--defaults", action="store_true", help=f"export the defaults: {', '.join(DEFAULTS)}")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--max-batch-size", type=int, default=None)
    parser.add_argument("--missing-only", action="store_true", help="skip models already in the repository")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    names = list(args.models) + (list(DEFAULTS) if args.defaults else [])
    if not names:
        print("name a model to export, or --defaults; built-in: " + ", ".join(sorted(BUILTIN)), file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        print(f"unknown model(s) {unknown}; built-in: {', '.join(sorted(BUILTIN))}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in dict.fromkeys(names):
        if args.missing_only and (args.repository / name / "config.pbtxt").is_file():
            print(f"{name}: already in {args.repository}, skipped")
            continue
        try:
            loaded = BUILTIN[name]()
            result = export_model(loaded, name, args.repository, max_batch_size=args.max_batch_size,
                                  progress=not args.no_progress)
        except (WeightsNotInstalled, ParityError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: version {result.version} written to {result.directory} "
              f"(parity: {', '.join(f'{k}={v:.3g}' for k, v in result.report.metrics.items())})")
    return 0
