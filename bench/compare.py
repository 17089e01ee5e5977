"""The benchmark harness: visiongate beside FastAPI, LitServe, BentoML and Triton, and the in-process
ceiling, on EfficientNet-Lite0 classify.

``--pipeline`` says what the peers do with each JPEG (bench/peers/pipelines.py):
  reference   as their users write them: full-size decode, numpy normalisation, a float-input export
  visiongate  the gateway's uint8 graph and its DCT-domain decoder; only the serving differs
  both        one after the other, in the same rounds
The gateway is the same in both and is measured once per round. For each server in turn (alone on
the machine, loopback only; even rounds in reverse order): a CPU-speed probe (``--calib``), start it,
check that the chelsea photo comes back as a cat, load it closed-loop with the same 64 real JPEGs at
each concurrency, stop it. Then the in-process ceiling of each pipeline (bench/inprocess.py), and
bench/summary.py prints the tables, the ratios and the targets.
Cases: visiongate (multipart, as the peers take it) and visiongate-raw (image/jpeg body); fastapi,
litserve, bentoml; triton-jpeg, triton-tensor and, with --perf-analyzer, perf_analyzer-tensor.
Client and servers share the cores: img/s is noisy on a busy host (see "foreign %", the CPU other
processes took; ``--quiet-wait`` waits for a quiet machine); "CPU ms/img" is much steadier.

usage: python bench/compare.py [--pipeline reference|visiongate|both] [-s visiongate fastapi ...]
                               [-c 1 8 32] [-d 6] [--rounds 1] [--calib 5] [--json results.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import summary
from bench.common import (
    MODEL,
    NCPU,
    REPOSITORY,
    SCRATCH,
    Server,
    chelsea_jpeg,
    client_session,
    closed_loop,
    http_sender,
    load_images,
    log,
    start_gateway,
    wait_quiet,
)
from bench.inprocess import calib, ceiling, model_for
from bench.peers import clients, launch, pipelines

CAT_IDS = range(281, 286)
SERVERS = ("visiongate", "fastapi", "litserve", "bentoml", "triton")
Row = dict[str, object]
Sender = tuple[Callable[[bytes], Awaitable[object]], Callable[[], Awaitable[None]]]


class Harness:
    def __init__(self, a: argparse.Namespace, jpegs: list[bytes]) -> None:
        self.a, self.jpegs, self.round = a, jpegs, 0
        self.rows: list[Row] = []
        self.tritonserver: str | None = None

    def emit(self, row: Row) -> None:
        row = {**row, "round": self.round}
        self.rows.append(row)
        if self.a.json:
            with open(self.a.json, "a") as f:
                f.write(json.dumps(row) + "\n")

    def senders(self, server: str, srv: Server, pipeline: str) -> dict[str, Callable[[], Sender]]:
        if server == "triton":
            return {
                f"triton-{k}": functools.partial(clients.triton_sender, srv.base_url, k, pipeline)
                for k in ("jpeg", "tensor")
            }

        def http(path: str, multipart: bool) -> Sender:
            session = client_session()
            close = session.close  # type: ignore[attr-defined]
            return http_sender(session, srv.base_url + path, multipart=multipart), close

        if server == "visiongate":
            path = f"/v1/classify?model={MODEL}"
            return {"visiongate": lambda: http(path, True), "visiongate-raw": lambda: http(path, False)}
        return {server: lambda: http("/classify", True)}

    async def load_case(self, label: str, make: Callable[[], Sender], srv: Server, pipeline: str) -> None:
        send, close = make()
        try:
            top1 = await send(chelsea_jpeg())
            if top1 not in CAT_IDS:
                raise RuntimeError(f"{label}: the chelsea photo came back as class {top1}, not a cat")
            for c in self.a.concurrency:
                for attempt in (1, 2):
                    if self.a.quiet_wait:
                        wait_quiet(self.a.quiet_wait, self.a.quiet_max)
                    p = await closed_loop(
                        label, send, self.jpegs, c, self.a.duration, self.a.warmup, server_pid=srv.proc.pid
                    )
                    row = {**p.row(), "pipeline": pipeline}
                    foreign = float(p.extra["foreign_pct"])  # type: ignore[arg-type]
                    retry = attempt == 1 and self.a.quiet_wait > 0 and foreign > self.a.quiet_max
                    self.emit({**row, "retried": True} if retry else row)
                    if not retry:
                        break
        finally:
            await close()

    def perf_analyzer(self, srv: Server, pipeline: str) -> None:
        grpc = srv.base_url
        for c in self.a.concurrency:
            try:
                p = clients.perf_analyzer(
                    self.a.perf_analyzer,
                    grpc,
                    c,
                    self.a.duration,
                    SCRATCH / "logs" / f"perf_analyzer_c{c}.log",
                    self.a.perf_analyzer_libs,
                )
                self.emit({"label": "perf_analyzer-tensor", "pipeline": pipeline, **p})
            except (subprocess.SubprocessError, OSError, StopIteration) as exc:
                log(f"perf_analyzer c={c} failed: {exc}")

    def block(self, server: str, pipeline: str) -> None:
        """One server: probe, start, every case, stop. ``pipeline`` is ``gateway`` for visiongate."""
        if self.a.calib:
            if self.a.quiet_wait:
                wait_quiet(self.a.quiet_wait, self.a.quiet_max)
            self.emit(
                {"label": "calib", "server": server, "pipeline": pipeline, **calib(self.jpegs, self.a.calib)}
            )
        log(f"{server} ({pipeline}): starting")
        t0 = time.monotonic()
        try:
            srv = (
                start_gateway()
                if server == "visiongate"
                else launch.PEERS[server](model_for(pipeline), pipeline)
            )
        except Exception as exc:
            log(f"{server}: could not start: {exc}")
            return
        try:
            log(f"{server}: ready in {time.monotonic() - t0:.1f} s; loading")
            for label, make in self.senders(server, srv, pipeline).items():
                try:
                    asyncio.run(self.load_case(label, make, srv, pipeline))
                except Exception as exc:
                    log(f"{label}: failed: {exc}\n{srv.tail()}")
            if server == "triton" and self.a.perf_analyzer:
                self.perf_analyzer(srv, pipeline)
            if server == "triton":
                m = re.search(r"server_version\s*\|\s*(\S+)", srv.log.read_text(errors="replace"))
                self.tritonserver = m.group(1) if m else None
        finally:
            srv.stop()


def check_pipelines(chosen: list[str]) -> None:
    """The visiongate pipeline must still be what the gateway does; the reference model must exist."""
    if "visiongate" in chosen:
        from visiongate.service.model_config import read_config
        from visiongate.service.repository import build_spec

        gw = build_spec(read_config(REPOSITORY / MODEL / "config.pbtxt")).preprocess
        if gw != pipelines.visiongate_config():
            sys.exit(
                f"bench/peers/pipelines.py's visiongate config {pipelines.visiongate_config()} is no longer "
                f"the gateway's {gw}: update it"
            )
    if "reference" in chosen and not model_for("reference").is_file():
        sys.exit(
            f"no {model_for('reference')}: bash bench/run_all.sh makes it "
            "(python bench/peers/export_model.py OUT.onnx)"
        )


def versions(tritonserver: str | None) -> Row:
    code = (
        "import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\nv = {}\n"
        "for p in sys.argv[1:]:\n    try: v[p] = version(p)\n    except PackageNotFoundError: pass\n"
        "print(json.dumps(v))"
    )
    out: Row = {"label": "versions", "python": sys.version.split()[0], "tritonserver": tritonserver}
    for py, pkgs in (
        (sys.executable, ["visiongate", "onnxruntime", "numpy", "pillow", "tritonclient", "aiohttp"]),
        (launch._py(launch.PEERS_VENV), ["onnxruntime", "numpy", "pillow", "fastapi", "uvicorn", "litserve"]),
        (launch._py(launch.BENTO_VENV), ["bentoml"]),
    ):
        try:
            got = json.loads(
                subprocess.run([py, "-c", code, *pkgs], capture_output=True, text=True, timeout=60).stdout
            )
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
        for k, v in got.items():
            out.setdefault(k if py == sys.executable or k not in out else f"{k} (peers)", v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", choices=[*pipelines.PIPELINES, "both"], default="both")
    ap.add_argument("-s", "--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("-d", "--duration", type=float, default=8.0, help="seconds per point")
    ap.add_argument("-w", "--warmup", type=float, default=1.0, help="seconds before each point")
    ap.add_argument("--ceiling-duration", type=float, default=5.0, help="seconds per ceiling case; 0: none")
    ap.add_argument(
        "--rounds", type=int, default=1, help="repeat the servers (even rounds reversed); medians"
    )
    ap.add_argument("--calib", type=float, default=0.0, help="seconds of CPU-speed probe before each server")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="wait up to this many s for a quiet machine before each point; re-run a noisy point once",
    )
    ap.add_argument("--quiet-max", type=float, default=10.0, help="foreign %% counted as quiet")
    ap.add_argument("--perf-analyzer", type=Path, help="perf_analyzer binary: adds perf_analyzer-tensor")
    ap.add_argument("--perf-analyzer-libs", type=Path, help="LD_LIBRARY_PATH for perf_analyzer")
    ap.add_argument(
        "--json", type=Path, help="append every row here as JSON lines (bench/summary.py reads it)"
    )
    a = ap.parse_args()
    chosen = list(pipelines.PIPELINES) if a.pipeline == "both" else [a.pipeline]
    check_pipelines(chosen)
    blocks = [("visiongate", "gateway")] if "visiongate" in a.servers else []
    for p in chosen:
        for s in a.servers:
            why = launch.available(s) if s != "visiongate" else None
            if why:
                log(f"skipping {s}: {why}")
            elif s != "visiongate":
                blocks.append((s, p))
    jpegs = load_images()
    log(
        f"{len(jpegs)} JPEGs; {NCPU} cores; {a.duration:g} s per point; pipelines {chosen}; "
        f"servers {[f'{s}/{p}' for s, p in blocks]}"
    )
    h = Harness(a, jpegs)
    for k in range(a.rounds):
        h.round = k + 1
        for s, p in blocks if k % 2 == 0 else blocks[::-1]:
            h.block(s, p)
    if a.ceiling_duration > 0:
        for p in chosen:
            log(f"in-process ceiling, {p} pipeline")
            if a.quiet_wait:
                wait_quiet(a.quiet_wait, a.quiet_max)
            h.emit({"label": "ceiling", **ceiling(jpegs, a.ceiling_duration, pipeline=p)})
    h.emit(versions(h.tritonserver))
    print(summary.report(h.rows))


if __name__ == "__main__":
    main()
