"""Scoring through a running gateway over HTTP: same records, retries on transient failures only."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from hashlib import sha1
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from batch_photos import ok, records
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from support import encode, free_port, photo
from visiongate.service.batch.cli import main
from visiongate.service.batch.engines import remote_error
from visiongate.service.batch.ledger import chunk_files
from visiongate.service.errors import (
    BackendUnavailable,
    BadRequest,
    DeadlineExceeded,
    InternalError,
    InvalidImage,
    ModelNotFound,
    Overloaded,
    ServiceUnavailable,
)


def score(source: Path, dest: Path, *extra: str, task: str = "classify") -> int:
    return main([str(source), "--task", task, "--out", str(dest), "--progress", "none", *extra])


# --- error translation -------------------------------------------------------------------------


def test_gateway_errors_come_back_as_the_class_they_were_raised_as() -> None:
    err = remote_error(400, "InvalidImage", "truncated")
    assert isinstance(err, InvalidImage) and "truncated" in err.message
    err = remote_error(503, "Overloaded", "queue full", retry_after_s=7)
    assert isinstance(err, Overloaded) and err.retry_after_s == 7
    assert isinstance(remote_error(404, "ModelNotFound", "x"), ModelNotFound)


def test_answers_from_something_else_than_the_gateway_map_by_status() -> None:
    # a proxy or load balancer in front of the gateway: transient
    assert type(remote_error(502, "HTTPError", "<html>Bad Gateway</html>")) is ServiceUnavailable
    assert type(remote_error(429, "HTTPError", "slow down", 2)) is ServiceUnavailable
    assert type(remote_error(504, "HTTPError", "<html>Gateway Timeout</html>")) is DeadlineExceeded
    assert type(remote_error(400, "HTTPError", "nope")) is BadRequest
    assert type(remote_error(500, "InternalError", "boom")) is InternalError  # not retried
    # a type name that does not match the status is not trusted
    assert type(remote_error(400, "Overloaded", "?")) is BadRequest


def test_no_answer_at_all_is_transient() -> None:
    assert type(remote_error(None, "ConnectError", "refused")) is BackendUnavailable
    assert type(remote_error(None, "ReadTimeout", "")) is DeadlineExceeded


# --- against a real gateway --------------------------------------------------------------------


def test_scoring_via_the_gateway_gives_the_in_process_records(mixed_folder: Path, gateway: str,
                                                              classify_repo: Path, tmp_path: Path) -> None:
    assert score(mixed_folder, tmp_path / "http", "--via", gateway, "--model", "efficientnet_lite0") == 0
    assert score(mixed_folder, tmp_path / "local", "--repository", str(classify_repo),
                 "--model", "efficientnet_lite0") == 0
    remote, local = records(tmp_path / "http"), records(tmp_path / "local")
    assert remote.keys() == local.keys() and len(remote) == 8
    for path, rec in local.items():
        other = remote[path]
        assert (other.status, other.error_type) == (rec.status, rec.error_type), path
        if rec.status == "ok":
            assert [p["class_id"] for p in ok(other)["predictions"]] == [
                p["class_id"] for p in ok(rec)["predictions"]]
            assert ok(other)["predictions"][0]["score"] == pytest.approx(
                ok(rec)["predictions"][0]["score"], abs=1e-4)


def test_super_resolution_via_the_gateway_saves_the_same_image(gateway: str, sr_repo: Path,
                                                               tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "cup.jpg").write_bytes(encode(photo("coffee")[150:230, 200:300], quality=95))
    assert score(src, tmp_path / "http", "--via", gateway, task="super-resolve") == 0
    assert score(src, tmp_path / "local", "--repository", str(sr_repo), task="super-resolve") == 0
    remote, local = records(tmp_path / "http")["cup.jpg"], records(tmp_path / "local")["cup.jpg"]
    assert remote.result == local.result
    assert ok(remote)["output_size"] == [200, 160]
    a, b = (np.asarray(Image.open(tmp_path / d / "images" / "cup.jpg.png"), dtype=np.int16)
            for d in ("http", "local"))
    assert a.shape == b.shape == (160, 200, 3) and np.abs(a - b).max() <= 1


class FlakyProxy:
    """A real HTTP server in front of the gateway that answers 503 (plain text, ``Retry-After: 0``)
    to the first try of every image, then forwards. Counts tries per image body."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.tries: Counter[str] = Counter()
        self.port = free_port()
        app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if request.method == "POST":
            key = sha1(body).hexdigest()
            self.tries[key] += 1
            if self.tries[key] == 1:
                return Response("upstream busy", status_code=503, headers={"Retry-After": "0"})
        async with httpx.AsyncClient(base_url=self.upstream) as client:
            resp = await client.request(request.method, request.url.path, params=request.query_params,
                                        content=body, headers={"content-type": request.headers.get(
                                            "content-type", "application/octet-stream")})
        return Response(resp.content, status_code=resp.status_code,
                        headers={k: v for k, v in resp.headers.items()
                                 if k.lower() not in ("content-length", "transfer-encoding", "connection")})

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("proxy did not start")
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_transient_503s_are_retried_and_bad_images_are_not(mixed_folder: Path, gateway: str,
                                                           tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with FlakyProxy(gateway) as proxy:
        assert score(mixed_folder, dest, "--via", proxy.url, "--model", "efficientnet_lite0") == 0
    got = records(dest)
    assert len(got) == 8
    assert sum(r.status == "ok" for r in got.values()) == 4
    assert got["truncated.jpg"].error_type == "InvalidImage"
    # every body: one 503, then one real answer. Bad images got a 400 on the 2nd try: no 3rd.
    # (empty.png and notes.jpg never reach the network: refused by the local checks)
    assert sorted(proxy.tries.values()) == [2] * 6


@pytest.fixture
def dead_gateway() -> Iterator[str]:
    """A TCP port that accepts connections and drops them at once (a gateway crashing on every request)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()  # RST

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_a_gateway_that_drops_connections_stops_the_run_and_a_rerun_resumes(
        mixed_folder: Path, dead_gateway: str, gateway: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "out"
    # the pre-flight GET /v1/models already fails: nothing is scored, exit 3 says "try again"
    assert score(mixed_folder, dest, "--via", dead_gateway, "--model", "efficientnet_lite0") == 3
    assert "re-run to resume" in capsys.readouterr().err
    assert chunk_files(dest) == []
    assert score(mixed_folder, dest, "--via", gateway, "--model", "efficientnet_lite0") == 0
    assert len(records(dest)) == 8


def test_a_gateway_dying_mid_run_stops_it_without_recording_the_lost_images(
        mixed_folder: Path, gateway: str, tmp_path: Path) -> None:
    from visiongate.service.batch.engines import HttpEngine
    from visiongate.service.batch.retry import RetryPolicy
    from visiongate.service.batch.runner import RunConfig, run_async
    from visiongate.service.batch.tasks import TaskOptions
    from visiongate.service.client import AsyncClient

    class DiesAfterTwo(HttpEngine):
        """The real HTTP engine; after two images the gateway 'goes away' (port with nobody on it)."""

        calls = 0

        async def score(self, data: bytes):  # type: ignore[no-untyped-def]
            DiesAfterTwo.calls += 1
            if DiesAfterTwo.calls == 3:
                await self.client.close()
                self.client = AsyncClient(f"http://127.0.0.1:{free_port()}", max_retries=0)
            return await super().score(data)

    opts = TaskOptions("classify", "efficientnet_lite0")
    cfg = RunConfig(mixed_folder, tmp_path / "out", {"task": "classify"}, in_flight=1, progress="none",
                    policy=RetryPolicy(attempts=2, base_s=0.01))
    summary = asyncio.run(run_async(cfg, DiesAfterTwo(gateway, opts)))
    assert summary.stopped and "BackendUnavailable" in summary.stopped
    got = records(tmp_path / "out")
    assert 2 <= len(got) < 8  # what finished is committed, the rest is left for the re-run
    assert all(r.status == "ok" or r.error_type == "InvalidImage" for r in got.values())


def test_detection_via_the_gateway_gives_the_in_process_boxes(gateway: str, detect_repo: Path,
                                                              tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "coffee.jpg").write_bytes(encode(photo("coffee"), quality=92))
    args = ("--model", "yolov3_tiny", "--score-threshold", "0.3")
    assert score(src, tmp_path / "http", "--via", gateway, *args, task="detect") == 0
    assert score(src, tmp_path / "local", "--repository", str(detect_repo), *args, task="detect") == 0
    remote = ok(records(tmp_path / "http")["coffee.jpg"])
    local = ok(records(tmp_path / "local")["coffee.jpg"])
    assert [d["label"] for d in remote["detections"]] == [d["label"] for d in local["detections"]]
    assert "cup" in [d["label"] for d in local["detections"]]
    assert all(d["score"] >= 0.3 for d in local["detections"])
    for a, b in zip(remote["detections"], local["detections"], strict=True):
        assert a["box"] == pytest.approx(b["box"], abs=0.5)
