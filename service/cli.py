"""The ``visiongate`` command: serve, export, models, score."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in {
        "repository": getattr(args, "repository", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "backend": getattr(args, "backend", None),
        "triton_url": getattr(args, "triton_url", None),
    }.items() if v is not None}
    return Settings(**overrides)


def _export_missing_defaults(repository: Path) -> None:
    """Export the default models the repository lacks, in a child process (the gateway never imports torch)."""
    from visiongate.export.sources.builtin import DEFAULTS  # a plain dict of names; imports no torch

    missing = [name for name in DEFAULTS if not (repository / name / "config.pbtxt").is_file()]
    if not missing:
        return
    if importlib.util.find_spec("torch") is None:
        print(f"the repository {repository} lacks {missing} and torch is not installed to export them; "
              "install the export extra (pip install -e '.[export]') or mount an exported repository",
              file=sys.stderr)
        return
    print(f"exporting {missing} into {repository} (first start only)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "visiongate.service.cli", "export", "--missing-only", "--repository",
                    str(repository), *missing], check=True)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from .server import check_can_serve, serve

    check_can_serve(settings)  # a refused start (no keys beyond loopback) before a minutes-long export
    if settings.backend == "onnxruntime" and not args.no_export:
        _export_missing_defaults(settings.repository)

    serve(settings)
    return 0


def cmd_export(argv: list[str]) -> int:
    from visiongate.export.cli import add_arguments, run

    parser = argparse.ArgumentParser(prog="visiongate export",
                                     description="Export models to ONNX into a Triton model repository.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def cmd_score(args: argparse.Namespace) -> int:
    from .batch.cli import run

    return run(args)


def cmd_models(args: argparse.Namespace) -> int:
    from .api.models import parity_report
    from .backends.base import resolve_version
    from .repository import ConfigError, read_model, scan

    rows: list[dict[str, Any]] = []
    for model_dir in scan(args.repository):
        try:
            spec = read_model(model_dir).spec
        except ConfigError as exc:
            rows.append({"name": model_dir.name, "error": str(exc)})
            continue
        rows.append({"name": spec.name, "task": spec.task, "platform": spec.platform,
                     "versions": list(spec.versions), "input_size": spec.preprocess.input_size,
                     "newest": resolve_version(spec, None) if spec.versions else None,
                     "inferred": dict(spec.inferred), "warnings": list(spec.warnings),
                     "parity": parity_report(args.repository, spec)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<24} UNAVAILABLE {r['error']}")
            continue
        par = r["parity"]
        proof = "no parity report"
        if par:
            figures = " ".join(f"{k}={v:.3g}" for k, v in par.items() if isinstance(v, float))
            proof = "parity " + ("ok " if par["passed"] else "FAILED ") + figures
        print(f"{r['name']:<24} {r['task']:<14} v{r['versions']} {r['platform']:<18} {proof}")
        for key, source in r["inferred"].items():
            print(f"{'':<24}   inferred {key} from {source}")
        for warning in r["warnings"]:
            print(f"{'':<24}   warning: {warning}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visiongate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP gateway (settings: VISIONGATE_* env vars)")
    serve.add_argument("--repository", type=Path)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--backend", choices=["onnxruntime", "triton"])
    serve.add_argument("--triton-url")
    serve.add_argument("--no-export", action="store_true",
                       help="do not export missing default models before serving")
    serve.set_defaults(func=cmd_serve)

    # The export CLI imports torch; parse its arguments only when it runs, so `serve` stays light.
    export = sub.add_parser("export", add_help=False,
                            help="export models to ONNX into the repository (needs the export extra)")
    export.add_argument("export_args", nargs=argparse.REMAINDER)
    export.set_defaults(func=lambda args: cmd_export(args.export_args))

    score = sub.add_parser("score", help="score a folder of images (resumable, shardable)")
    from .batch.cli import add_arguments as add_score_arguments

    add_score_arguments(score)
    score.set_defaults(func=cmd_score)

    from .keys_cli import add_keys_parser

    add_keys_parser(sub)

    models = sub.add_parser("models", help="list the repository's models and their parity proofs")
    models.add_argument("--repository", type=Path, default=Path("model_repository"))
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "export":
        return cmd_export(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
