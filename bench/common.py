"""Shared pieces of the benchmarks: test images, server processes, a closed-loop HTTP load generator.

Everything here is loopback only and cleans up after itself: every server runs in its own session
(its PID is its process group) and is stopped by that group, never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: scratch space for images, venvs, logs; override with VISIONGATE_BENCH_DIR
SCRATCH = Path(os.environ.get("VISIONGATE_BENCH_DIR", "/tmp/visiongate-bench"))
REPOSITORY = Path(os.environ.get("VISIONGATE_BENCH_REPOSITORY", ROOT / "model_repository"))
MODEL = "efficientnet_lite0"
HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

# scikit-image photographs that ship with the package (no download)
_SOURCES = ("astronaut", "chelsea", "cat", "coffee", "rocket", "camera", "coins", "brick", "grass",
            "gravel", "moon", "clock", "text", "hubble_deep_field", "immunohistochemistry", "retina")


# ---------------------------------------------------------------- images
def make_images(out_dir: Path, n: int = 64) -> list[Path]:
    """``n`` real photos as ~640x480 JPEGs (quality 90): crops/mirrors/rotations, seeded."""
    from PIL import Image, ImageOps
    from skimage import data

    out_dir.mkdir(parents=True, exist_ok=True)
    photos = {}
    for name in _SOURCES:
        with contextlib.suppress(Exception):  # a source that needs a download is skipped
            photos[name] = Image.fromarray(np.asarray(getattr(data, name)(), np.uint8)).convert("RGB")
    left, right, _ = data.stereo_motorcycle()  # type: ignore[no-untyped-call]
    photos["motorcycle_left"], photos["motorcycle_right"] = Image.fromarray(left), Image.fromarray(right)
    names, rng = sorted(photos), np.random.default_rng(0)
    paths = []
    for i in range(n):
        img, kind = photos[names[i % len(names)]], (i // len(names)) % 4
        if kind in (1, 3):
            img = ImageOps.mirror(img)
        if kind == 2:
            f = rng.uniform(0.6, 0.95)
            w, h = img.size
            cw, ch = int(w * f), int(h * f)
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            img = img.crop((x, y, x + cw, y + ch))
        if kind == 3:
            img = img.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
        size = (480, 640) if i % 8 == 7 else (640, 480)
        path = out_dir / f"{i:02d}_{names[i % len(names)]}.jpg"
        ImageOps.fit(img, size, Image.Resampling.BICUBIC).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def image_files(n: int = 64) -> list[Path]:
    """The benchmark's JPEG files (made once into the scratch folder), sorted."""
    d = SCRATCH / "images"
    files = sorted(glob.glob(str(d / "*.jpg")))
    if len(files) != n:
        return sorted(make_images(d, n))
    return [Path(f) for f in files]


def load_images(n: int = 64) -> list[bytes]:
    """The benchmark's JPEGs as bytes, in file-name order."""
    return [p.read_bytes() for p in image_files(n)]


def chelsea_jpeg() -> bytes:
    """The tabby-cat photo: a classifier must answer an ImageNet cat class (281-285) for it."""
    return next(p for p in image_files() if "chelsea" in p.name).read_bytes()


# ---------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server process in its own session; ``stop()`` ends its whole process group."""

    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        # children that outlived the leader (multi-process servers) are in the same group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""


def start_server(name: str, cmd: Sequence[str], base_url: str, ready_path: str, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout_s: float = 120.0) -> Server:
    """Start ``cmd`` in a new session and wait until ``GET ready_path`` answers 200."""
    log = SCRATCH / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    server = Server(name, proc, base_url, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{server.tail()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(base_url + ready_path, timeout=2) as r:
            if r.status == 200:
                return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"{name} not ready after {timeout_s:g} s:\n{server.tail()}")


def start_gateway(port: int | None = None, env: dict[str, str] | None = None,
                  name: str = "visiongate") -> Server:
    """``visiongate serve`` on the main venv's Python, quiet logs, on a free loopback port."""
    port = port or free_port()
    return start_server(
        name, [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export", "--host", "127.0.0.1",
               "--port", str(port), "--repository", str(REPOSITORY)],
        f"http://127.0.0.1:{port}", "/readyz", env={"VISIONGATE_LOG_LEVEL": "warning", **(env or {})},
        cwd=ROOT)


@contextlib.contextmanager
def running(server_factory: Callable[[], Server]) -> Iterator[Server]:
    server = server_factory()
    try:
        yield server
    finally:
        server.stop()


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


# ---------------------------------------------------------------- CPU accounting
def cpu_snapshot(pid: int | None) -> tuple[float, int, int, float]:
    """(time, busy ticks of all cores, ticks of ``pid`` and its descendants, ticks of this process)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    srv = 0
    if pid:
        for p in [pid, *_descendants(pid)]:
            with contextlib.suppress(OSError, IndexError, ValueError):
                st = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                srv += int(st[11]) + int(st[12])
    t = os.times()
    return time.perf_counter(), sum(v) - v[3] - v[4], srv, (t.user + t.system) * HZ


def cpu_delta(a: tuple[float, int, int, float], b: tuple[float, int, int, float]) -> dict[str, float]:
    """Cores used by the server, by this client, and by everyone else (% of the machine)."""
    dt = b[0] - a[0]
    busy, srv, me = b[1] - a[1], b[2] - a[2], b[3] - a[3]
    return {"server_cores": round(srv / HZ / dt, 2), "client_cores": round(me / HZ / dt, 2),
            "foreign_pct": round(max(0.0, busy - srv - me) / HZ / dt / NCPU * 100, 1)}


def wait_quiet(max_wait_s: float, max_pct: float) -> float:
    """Wait (up to ``max_wait_s``) until other processes use under ``max_pct`` % of all cores over a
    2 s sample; the last sample's foreign %."""
    end = time.monotonic() + max_wait_s
    while True:
        a = cpu_snapshot(None)
        time.sleep(2.0)
        f = cpu_delta(a, cpu_snapshot(None))["foreign_pct"]
        if f < max_pct or time.monotonic() > end:
            return f


# ---------------------------------------------------------------- load
@dataclass
class Point:
    """One measured load point."""

    label: str
    concurrency: int
    img_s: float
    p50_ms: float
    p99_ms: float
    ok: int
    errors: int
    seconds: float
    extra: dict[str, object] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        return {"label": self.label, "concurrency": self.concurrency, "img_s": self.img_s,
                "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "ok": self.ok, "errors": self.errors,
                "seconds": self.seconds, **self.extra}


def percentiles_ms(lat_s: Sequence[float]) -> tuple[float, float]:
    if not lat_s:
        return float("nan"), float("nan")
    a = np.asarray(lat_s) * 1000
    return round(float(np.percentile(a, 50)), 1), round(float(np.percentile(a, 99)), 1)


Send = Callable[[bytes], Awaitable[object]]


async def closed_loop(label: str, send: Send, payloads: Sequence[bytes], concurrency: int,
                      duration_s: float, warmup_s: float = 1.0, server_pid: int | None = None) -> Point:
    """``concurrency`` workers send back to back for ``duration_s`` (after ``warmup_s``)."""
    lat: list[float] = []
    errors, last_error = 0, ""
    nxt = 0
    snap = None
    elapsed = 0.0
    for phase, secs in (("warmup", warmup_s), ("measure", duration_s)):
        if phase == "measure":
            snap = cpu_snapshot(server_pid)
        t0 = time.perf_counter()
        end = t0 + secs

        async def worker(end: float = end, measuring: bool = phase == "measure") -> None:
            nonlocal nxt, errors, last_error
            while time.perf_counter() < end:
                data = payloads[nxt % len(payloads)]
                nxt += 1
                s = time.perf_counter()
                try:
                    await send(data)
                except Exception as exc:  # every failure is counted
                    if measuring:
                        errors += 1
                        last_error = repr(exc)[:200]
                    await asyncio.sleep(0.01)
                    continue
                if measuring:
                    lat.append(time.perf_counter() - s)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    assert snap is not None
    p50, p99 = percentiles_ms(lat)
    extra: dict[str, object] = dict(cpu_delta(snap, cpu_snapshot(server_pid)))
    if last_error:
        extra["last_error"] = last_error
    return Point(label, concurrency, round(len(lat) / elapsed, 1), p50, p99, len(lat), errors,
                 round(elapsed, 1), extra)


def http_sender(session: object, url: str, multipart: bool = False, field_name: str = "file",
                headers: dict[str, str] | None = None) -> Send:
    """POST one JPEG (raw ``image/jpeg`` body or multipart ``file``); raise unless 200 with a top class."""
    import aiohttp

    assert isinstance(session, aiohttp.ClientSession)

    async def send(data: bytes) -> int:
        if multipart:
            form = aiohttp.FormData()
            form.add_field(field_name, data, filename="img.jpg", content_type="image/jpeg")
            body: object = form
            hdrs = headers
        else:
            body = data
            hdrs = {"Content-Type": "image/jpeg", **(headers or {})}
        async with session.post(url, data=body, headers=hdrs) as r:
            raw = await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {raw[:200]!r}")
            return top_class(json.loads(raw))

    return send


def top_class(body: object) -> int:
    """The top-1 class id of a visiongate (``predictions``) or peer (``top5``) answer."""
    if isinstance(body, dict) and "predictions" in body:
        return int(body["predictions"][0]["class_id"])
    if isinstance(body, dict) and "top5" in body:
        return int(body["top5"][0]["class_id"])
    raise ValueError(f"unexpected answer: {str(body)[:200]}")


def client_session() -> object:
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False),
                                 timeout=aiohttp.ClientTimeout(total=60))


# ---------------------------------------------------------------- output
def table(rows: Sequence[dict[str, object]], cols: Sequence[tuple[str, str]]) -> str:
    """A markdown table of ``rows`` with ``cols`` as (key, heading)."""
    def fmt(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)
    lines = ["| " + " | ".join(h for _, h in cols) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
