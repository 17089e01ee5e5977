"""``visiongate score``: the argparse face of batch scoring.

The only place that reads the Kubernetes Indexed Job variables (``JOB_COMPLETION_INDEX``,
``VISIONGATE_SHARD_COUNT``); everything below takes a ``Shard``.

Exit status: 0 the shard is complete (per-image failures are records, not a failed run; add
``--strict`` to exit 1 when any image failed); 2 bad arguments or a DEST/model problem found before
scoring; 3 stopped early or never started because the remote side is down (after retries), or
SIGTERM/SIGINT: re-run to resume; 4 the results could not be written (disk full, read-only DEST,
quota, file size limit, I/O error): nothing committed is lost, fix the cause and re-run to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import ServiceUnavailable, VisionGateError
from ..settings import Settings
from .engines import Engine
from .ledger import LedgerError
from .progress import Summary
from .retry import RetryPolicy
from .runner import RunConfig, run_async
from .shard import Shard
from .tasks import CLI_TASKS, TaskOptions
from .writers import OutputWriteError, atomic_write, parquet_available

logger = logging.getLogger("visiongate.batch")

EXIT_OK, EXIT_FAILED_IMAGES, EXIT_USAGE, EXIT_STOPPED, EXIT_OUTPUT = 0, 1, 2, 3, 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--task", required=True, choices=CLI_TASKS)
    parser.add_argument("--out", required=True, type=Path, dest="dest",
                        help="results folder: part-<shard>-<seq>.<format> chunks "
                             "(+ images/ for super-resolve)")
    parser.add_argument("--model", help="model name; default: the first model that does the task")
    parser.add_argument("--version", type=int, help="model version; default: the newest")
    parser.add_argument("--top-k", type=int, default=5, help="classify: classes per image (default 5)")
    parser.add_argument("--score-threshold", type=float,
                        help="detect: drop boxes below this score (default: the model's)")
    parser.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl", dest="fmt")
    parser.add_argument("--via", metavar="URL",
                        help="run inference on a gateway (http://host:port) or Triton (triton://host:port); "
                             "default: in this process on the embedded onnxruntime")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="ray: score with Ray Data map_batches (needs the 'ray' extra)")
    parser.add_argument("--ray-address", help="Ray cluster address (default: start a local one)")
    parser.add_argument("--ray-workers", type=int, default=2, help="Ray scoring actors (default 2)")
    parser.add_argument("--shard", metavar="I/N", help="score only shard I of N (hash of the relative path); "
                        "default: $JOB_COMPLETION_INDEX/$VISIONGATE_SHARD_COUNT, else 0/1")
    parser.add_argument("--repository", type=Path, help="model repository for the in-process runtime")
    parser.add_argument("--chunk-size", type=int, default=256, help="records per committed chunk")
    parser.add_argument("--chunk-seconds", type=float, default=10.0, help="commit at least this often")
    parser.add_argument("--in-flight", type=int, default=32, help="images being read/scored at once")
    parser.add_argument("--max-file-bytes", type=int, help="larger files are recorded as errors "
                        "(default: the gateway's VISIONGATE_MAX_BODY_BYTES)")
    parser.add_argument("--retries", type=int, default=5, help="retries of a transient remote failure")
    parser.add_argument("--timeout", type=float, default=60.0, help="--via http: seconds per request")
    parser.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto",
                        help="auto: a bar on a terminal, log lines otherwise")
    parser.add_argument("--log-every", type=float, default=10.0, help="seconds between progress log lines")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any image failed")


def shard_from(args_shard: str | None, env: Mapping[str, str]) -> Shard:
    """``--shard`` wins; else the Indexed Job's ``JOB_COMPLETION_INDEX`` with ``VISIONGATE_SHARD_COUNT``."""
    if args_shard:
        return Shard.parse(args_shard)
    index, count = env.get("JOB_COMPLETION_INDEX"), env.get("VISIONGATE_SHARD_COUNT")
    if index is None and count is None:
        return Shard(0, 1)
    if index is None or count is None:
        raise ValueError("set both JOB_COMPLETION_INDEX and VISIONGATE_SHARD_COUNT (or pass --shard I/N)")
    return Shard(int(index), int(count))


def _settings(args: argparse.Namespace) -> Settings:
    from ..settings import Settings

    return Settings(**({"repository": args.repository} if args.repository else {}))


def _engine(args: argparse.Namespace, settings: Settings, opts: TaskOptions) -> Engine:
    from .engines import HttpEngine, local_engine, triton_engine

    via = args.via or ""
    if via.startswith(("http://", "https://")):
        return HttpEngine(via, opts, timeout_s=args.timeout)
    if via.startswith(("triton://", "triton+http://")):
        return triton_engine(settings, opts, via)
    if via:
        raise ValueError(f"--via {via!r}: use http://host:port or triton://host:port")
    return local_engine(settings, opts)


def _write_summary(dest: Path, shard: Shard, summary: Summary) -> None:
    data = json.dumps({**dataclasses.asdict(summary), "images_per_s": summary.images_per_s,
                       "shard": str(shard)}, indent=2).encode()
    atomic_write(dest / f"_summary-{shard.label}.json", lambda fh: fh.write(data))


def run(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        shard = shard_from(args.shard, os.environ)
        if not args.source.is_dir():
            raise ValueError(f"SOURCE {args.source} is not a folder")
        if args.fmt == "parquet" and not parquet_available():
            raise ValueError("--format parquet needs pyarrow: pip install 'visiongate[parquet]'")
        if args.engine == "ray" and args.via:
            raise ValueError("--engine ray runs the embedded runtime on the Ray workers; drop --via")
    except ValueError as exc:
        print(f"visiongate score: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings(args)
    opts = TaskOptions(args.task, args.model, args.version, args.top_k, args.score_threshold)
    cfg = RunConfig(
        source=args.source, dest=args.dest, shard=shard, fmt=args.fmt,
        job={"task": args.task, "model": args.model, "version": args.version,
             "top_k": args.top_k if args.task == "classify" else None,
             "score_threshold": args.score_threshold if args.task == "detect" else None},
        chunk_size=args.chunk_size, chunk_seconds=args.chunk_seconds, in_flight=args.in_flight,
        max_file_bytes=args.max_file_bytes or settings.max_body_bytes,
        policy=RetryPolicy(attempts=args.retries + 1), progress=args.progress, log_every_s=args.log_every,
        writes_images=args.task == "super-resolve",
    )
    try:
        if args.engine == "ray":
            from .ray_engine import run_ray

            summary = run_ray(cfg, settings, opts, address=args.ray_address, workers=args.ray_workers)
        else:
            summary = asyncio.run(run_async(cfg, _engine(args, settings, opts)))
    except ServiceUnavailable as exc:  # the gateway/Triton is not up (yet): worth a retry of the job
        print(f"visiongate score: {exc.message}; re-run to resume", file=sys.stderr)
        return EXIT_STOPPED
    except OutputWriteError as exc:
        print(f"visiongate score: {exc}; what was committed is kept: fix that and re-run to resume",
              file=sys.stderr)
        return EXIT_OUTPUT
    except (LedgerError, VisionGateError, ValueError, ImportError) as exc:
        print(f"visiongate score: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        _write_summary(cfg.dest, shard, summary)
    except OutputWriteError as exc:
        print(summary.line(), file=sys.stderr)
        print(f"visiongate score: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    print(summary.line(), file=sys.stderr)
    if summary.stopped:
        return EXIT_STOPPED
    return EXIT_FAILED_IMAGES if args.strict and summary.failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visiongate score", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
