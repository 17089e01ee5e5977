"""What do API keys, request logs and tracing cost per request? (issue 18)

Three gateways side by side, each serving EfficientNet-Lite0 from the same repository:
  off        create_app as it is with VISIONGATE_AUTH=off, tracing off, no request log
  on         install_security: a key required (Bearer), a JSON request log line per request,
             OpenTelemetry spans made for every request but no exporter
  exporter   as "on", plus OTLP/HTTP export to a sink in this process (a thread that answers 200)
Two loads: POST /v1/classify with 64 real JPEGs (~640x480, the real work) and GET /v1/models (no
model work: the overhead alone, the worst case). Closed loop at each concurrency; the configurations
take turns for ``--rounds`` rounds and the median of the rounds is reported, as a ratio to "off".
The client, the sink and the three servers share this machine's cores: on a busy 2-core machine
differences of a few percent are within the noise, so read the ratios, not the absolute rates.

usage: python bench/bench_security_overhead.py [-c 1 32] [-d 4] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    Point,
    Server,
    client_session,
    closed_loop,
    free_port,
    http_sender,
    load_images,
    log,
    start_server,
    table,
)
from visiongate.service.security.keys import make_entry, new_key, write_file

# the gateway as `visiongate serve` runs it, with install_security applied unless create_app did it
LAUNCH = """
import os
import visiongate.service.server
from visiongate.service.app import create_app
from visiongate.service.security import install_security
from visiongate.service.settings import Settings

def secured(settings, backend=None):
    app = create_app(settings, backend)
    if os.environ.get("BENCH_SECURITY") == "1" and not hasattr(app.state, "gate"):
        install_security(app, settings)
    return app

visiongate.service.server.create_app = secured
visiongate.service.server.serve(Settings())
"""


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _gateway(name: str, repository: Path, env: dict[str, str]) -> Server:
    port = free_port()
    return start_server(name, [sys.executable, "-c", LAUNCH], f"http://127.0.0.1:{port}", "/readyz", cwd=ROOT,
                        env={"VISIONGATE_PORT": str(port), "VISIONGATE_REPOSITORY": str(repository),
                             "PYTHONPATH": str(ROOT), **env})


def _get_sender(session: Any, url: str, headers: dict[str, str]) -> Any:
    async def send(_: bytes) -> int:
        async with session.get(url, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}")
            return int(r.status)

    return send


async def _measure(servers: dict[str, Server], key: str, images: list[bytes], concurrency: list[int],
                   duration_s: float, rounds: int) -> list[dict[str, object]]:
    points: dict[tuple[str, str, int], list[Point]] = {}
    names = list(servers)
    async with client_session() as session:  # type: ignore[attr-defined]
        for load in ("classify", "models"):
            for c in concurrency:
                for r in range(rounds):
                    for name in names[r % len(names):] + names[:r % len(names)]:  # take turns
                        server = servers[name]
                        headers = {} if name == "off" else {"Authorization": f"Bearer {key}"}
                        if load == "classify":
                            url = server.base_url + "/v1/classify?model=efficientnet_lite0"
                            send = http_sender(session, url, headers=headers)
                        else:
                            send = _get_sender(session, server.base_url + "/v1/models", headers)
                        point = await closed_loop(name, send, images, c, duration_s, warmup_s=1.0,
                                                  server_pid=server.proc.pid)
                        if point.errors:
                            log(f"{name} {load} c={c}: {point.errors} errors, "
                                f"{point.extra.get('last_error')}")
                        points.setdefault((load, name, c), []).append(point)
                        log(f"{load} c={c} {name}: {point.img_s} req/s, p50 {point.p50_ms} ms")
    rows = []
    for load in ("classify", "models"):
        for c in concurrency:
            base = statistics.median(p.img_s for p in points[(load, "off", c)])
            for name in names:
                got = points[(load, name, c)]
                rate = statistics.median(p.img_s for p in got)
                rows.append({"load": load, "concurrency": c, "config": name, "req_s": round(rate, 1),
                             "p50_ms": statistics.median(p.p50_ms for p in got),
                             "ratio": round(rate / base, 3) if base else None,
                             "rounds": [p.img_s for p in got]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("-d", "--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vg-bench-security-"))
    repo = work / "repository"
    repo.mkdir()
    (repo / "efficientnet_lite0").symlink_to(args.repository.resolve() / "efficientnet_lite0")
    key = new_key()
    write_file(work / "keys.json", [make_entry("bench", key, ["infer", "read"])])
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    common = {"VISIONGATE_INFERENCE_WORKERS": "1", "VISIONGATE_LOG_LEVEL": "info"}
    secured = {**common, "BENCH_SECURITY": "1", "VISIONGATE_API_KEYS_FILE": str(work / "keys.json"),
               "VISIONGATE_LOG_FORMAT": "json", "VISIONGATE_TRACING": "on"}
    configs = {
        "off": {**common, "VISIONGATE_AUTH": "off", "VISIONGATE_TRACING": "off",
                "VISIONGATE_REQUEST_LOG": "false"},
        "on": secured,
        "exporter": {**secured, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}"},
    }
    servers: dict[str, Server] = {}
    try:
        for name, env in configs.items():
            servers[name] = _gateway(f"security-{name}", repo, env)
        rows = asyncio.run(_measure(servers, key, load_images(64), args.concurrency, args.duration,
                                    args.rounds))
    finally:
        for server in servers.values():
            server.stop()
        sink.shutdown()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows, [("load", "load"), ("concurrency", "concurrency"), ("config", "config"),
                           ("req_s", "req/s (median)"), ("p50_ms", "p50 ms"), ("ratio", "vs off"),
                           ("rounds", "each round")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
