"""Connection-level hostile cases against a real gateway process, bounded and loopback only.

    python bench/hostile_connections.py [--repository model_repository] [--rounds 3]

Cases (each round): silent sockets and slowloris connections are closed and cannot starve health
probes or inference; SIGTERM shortly after a burst of requests leaves none unanswered (every
request whose connection was accepted gets an HTTP answer) and the process exits 0; requests still
running at the drain timeout get a JSON 503 with Retry-After. The SIGTERM cases also run with the
gateway stopped (SIGSTOP) while requests arrive, so that they wait in the kernel's listen backlog.
Prints each case and "cases tried, passed". Every gateway runs in its own session and is stopped by
its process group, never by name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Tally:
    tried: int = 0
    passed: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.tried += 1
        self.passed += ok
        print(f"  {'pass' if ok else 'FAIL'}  {name}{'  (' + detail + ')' if detail else ''}", flush=True)
        if not ok:
            self.failures.append(f"{name}: {detail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gateway(repository: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="hostile-gateway-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export", "--port", str(port),
         "--repository", str(repository)],
        cwd=ROOT, env={**os.environ, "VISIONGATE_LOG_LEVEL": "warning", **env},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {proc.returncode}; see {log.name}")
            if http(port, "GET", "/readyz", timeout=2)[0] == 200:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the gateway was not ready in 120 s; see {log.name}")
        yield proc, port
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        os.unlink(log.name)


def http(port: int, method: str, path: str, body: bytes = b"", ctype: str = "image/jpeg",
         timeout: float = 20) -> tuple[int | None, dict[str, str], bytes]:
    """One request on a new connection: (status or None when no answer came, headers, body)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
    except OSError:
        return None, {}, b""
    return parse(raw)


def parse(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def is_json_error(status: int | None, headers: dict[str, str], body: bytes, code: int) -> bool:
    if status != code or "application/json" not in headers.get("content-type", ""):
        return False
    try:
        return "type" in json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False


def photo_jpeg(name: str, size: int | None = None) -> bytes:
    from PIL import Image
    from skimage import data

    img = Image.fromarray(getattr(data, name)())
    if size:
        img = img.resize((size, size))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


async def raw_request(port: int, request: bytes, timeout: float) -> tuple[str, int | None]:
    """('answered', status) | ('reset', None) | ('refused', None) | ('no answer', None)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (ConnectionRefusedError, TimeoutError):
        return "refused", None
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return "reset", None
    except TimeoutError:
        return "no answer", None
    finally:
        writer.close()
    status = parse(raw)[0]
    return ("answered", status) if status is not None else ("no answer", None)


# ------------------------------------------------------------------------------------------ cases

def slow_connections(repository: Path, tally: Tally, jpeg: bytes) -> None:
    cap = 40
    # the request cap (before: a connection cap) of a gateway allowing 20 open requests is 104
    env = {"VISIONGATE_MAX_CONNECTIONS": str(cap), "VISIONGATE_IDLE_TIMEOUT_S": "1",
           "VISIONGATE_HEADER_TIMEOUT_S": "3", "VISIONGATE_MAX_OPEN_REQUESTS": "20"}
    with gateway(repository, env) as (_, port):
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap * 2)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap)]
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        for sock in silent + slow:
            sock.settimeout(0.2)
        answered = []
        for path in ("/healthz", "/readyz"):
            answered.append(http(port, "GET", path, timeout=10)[0] == 200)
        answered.append(http(port, "POST", "/v1/classify", jpeg, timeout=30)[0] == 200)
        tally.check(f"{cap * 2} silent + {cap} slowloris sockets: health, readiness and classify answered",
                    all(answered), f"{answered}")
        started = time.monotonic()
        for _ in range(6):  # the slow ones keep sending a byte a second until the header timeout
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"a")
            time.sleep(1)
        closed = 0
        for sock in silent + slow:
            try:
                sock.recv(4096)  # b"" (closed), or the 408 sent just before closing
                closed += 1
            except TimeoutError:
                pass
            except OSError:  # reset: closed too
                closed += 1
            sock.close()
        tally.check(f"silent and slowloris sockets closed within {time.monotonic() - started:.0f} s",
                    closed == len(silent) + len(slow), f"{closed}/{len(silent) + len(slow)} closed")


def sigterm_under_load(repository: Path, tally: Tally, jpeg: bytes, delay_s: float, requests: int) -> None:
    request = (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
               b"Content-Length: %d\r\n\r\n" % len(jpeg)) + jpeg
    with gateway(repository, {}) as (proc, port):
        async def scenario() -> list[tuple[str, int | None]]:
            tasks = [asyncio.ensure_future(raw_request(port, request, 60)) for _ in range(requests)]
            await asyncio.sleep(delay_s)
            proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*tasks))

        outcomes = asyncio.run(scenario())
        code = proc.wait(60)
    answered = [status for kind, status in outcomes if kind == "answered"]
    lost = [kind for kind, _ in outcomes if kind != "answered"]
    tally.check(f"SIGTERM {delay_s:.2f} s after {requests} classify requests: every one answered",
                not lost, f"{len(answered)} answered {sorted(set(answered))}, lost: {lost}")
    tally.check("  ... and the process exits 0", code == 0, f"exit {code}")


def sigterm_with_a_full_backlog(repository: Path, tally: Tally, jpeg: bytes, requests: int) -> None:
    """The gateway is stopped (SIGSTOP) while requests connect and send, so they wait in the listen
    backlog; SIGTERM lands before it runs again."""
    request = (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
               b"Content-Length: %d\r\n\r\n" % len(jpeg)) + jpeg
    with gateway(repository, {}) as (proc, port):
        async def scenario() -> list[tuple[str, int | None]]:
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                tasks = [asyncio.ensure_future(raw_request(port, request, 60)) for _ in range(requests)]
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGTERM)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            return list(await asyncio.gather(*tasks))

        outcomes = asyncio.run(scenario())
        code = proc.wait(60)
    lost = [kind for kind, _ in outcomes if kind != "answered"]
    tally.check(f"SIGTERM with {requests} requests waiting in the listen backlog: every one answered",
                not lost, f"{requests - len(lost)} answered, lost: {lost}")
    tally.check("  ... and the process exits 0", code == 0, f"exit {code}")


def drain_timeout(repository: Path, tally: Tally) -> None:
    big = photo_jpeg("astronaut", 900)  # several seconds of tiles on a CPU
    request = (b"POST /v1/super-resolve HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
               b"Content-Length: %d\r\n\r\n" % len(big)) + big
    with gateway(repository, {"VISIONGATE_DRAIN_TIMEOUT_S": "0.5"}) as (proc, port):
        async def scenario() -> list[bytes]:
            async def one() -> bytes:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                await writer.drain()
                try:
                    return await asyncio.wait_for(reader.read(), 60)
                finally:
                    writer.close()

            tasks = [asyncio.ensure_future(one()) for _ in range(2)]
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*tasks, return_exceptions=True))  # type: ignore[arg-type]

        answers = asyncio.run(scenario())
        code = proc.wait(60)
    ok = []
    for raw in answers:
        if isinstance(raw, bytes):
            status, headers, body = parse(raw)
            ok.append(is_json_error(status, headers, body, 503) and "retry-after" in headers)
        else:
            ok.append(False)
    tally.check("super-resolves still running at the drain timeout: JSON 503 + Retry-After", all(ok), f"{ok}")
    tally.check("  ... and the process exits 0", code == 0, f"exit {code}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    tally = Tally()
    jpeg = photo_jpeg("chelsea")
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds}", flush=True)
        slow_connections(args.repository, tally, jpeg)
        for delay in (0.05, 0.15, 0.4):
            sigterm_under_load(args.repository, tally, jpeg, delay, requests=10)
        sigterm_under_load(args.repository, tally, jpeg, 0.15, requests=64)
        sigterm_with_a_full_backlog(args.repository, tally, jpeg, requests=10)
        drain_timeout(args.repository, tally)
    print(f"cases tried {tally.tried}, passed {tally.passed}")
    for failure in tally.failures:
        print(f"  failed: {failure}")
    return 0 if tally.passed == tally.tried else 1


if __name__ == "__main__":
    sys.exit(main())
