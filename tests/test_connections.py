"""Connection-level limits on a real gateway process: idle and slow connections are closed, headers
are bounded, and neither silent sockets nor slowloris nor busy connections starve health probes."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import GatewayProcess, wait_ready

MAX_CONNECTIONS = 12


@pytest.fixture(scope="module")
def gateway_small(repository: Path) -> Iterator[tuple[str, int]]:
    server = GatewayProcess(repository, env={
        "VISIONGATE_MAX_CONNECTIONS": str(MAX_CONNECTIONS), "VISIONGATE_IDLE_TIMEOUT_S": "1",
        "VISIONGATE_HEADER_TIMEOUT_S": "2", "VISIONGATE_MAX_HEADER_BYTES": "4096",
        "VISIONGATE_INFERENCE_WORKERS": "1"})
    try:
        wait_ready(server.url)
        yield "127.0.0.1", server.port
    finally:
        server.stop()


def read_all(sock: socket.socket, limit_s: float = 20.0) -> bytes:
    """Everything until the server closes (a test that hangs here fails on the socket timeout)."""
    sock.settimeout(limit_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def status_and_body(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def test_a_silent_socket_is_closed(gateway_small: tuple[str, int]) -> None:
    with socket.create_connection(gateway_small) as sock:
        assert read_all(sock) == b""  # closed by the server, without a word


def test_slowloris_gets_a_json_408_and_the_connection_closes(gateway_small: tuple[str, int]) -> None:
    with socket.create_connection(gateway_small) as sock:
        sock.settimeout(20)
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        closed = False
        for byte in request:  # one byte every 20 ms: the headers never complete in 2 s
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.02)
        raw = b"" if closed else read_all(sock)
    if raw:
        status, _, body = status_and_body(raw)
        assert status == 408 and body["error"]["type"] == "RequestTimeout"
    else:
        assert closed


def test_headers_past_the_limit_get_a_json_431(gateway_small: tuple[str, int]) -> None:
    with socket.create_connection(gateway_small) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        status, headers, body = status_and_body(read_all(sock))
    assert status == 431 and headers["connection"] == "close" and body["error"]["type"] == "HeadersTooLarge"


def test_bytes_that_are_not_http_get_a_json_400(gateway_small: tuple[str, int]) -> None:
    with socket.create_connection(gateway_small) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
        status, _, body = status_and_body(read_all(sock))
    assert status == 400 and body["error"]["type"] == "InvalidRequest"


def test_silent_and_slow_connections_cannot_fill_the_cap(gateway_small: tuple[str, int],
                                                         chelsea_jpeg: bytes) -> None:
    url = "http://{}:{}".format(*gateway_small)
    hogs = [socket.create_connection(gateway_small) for _ in range(MAX_CONNECTIONS * 3)]
    for sock in hogs[::2]:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # slowloris: headers started, never finished
    try:
        with httpx.Client(base_url=url, timeout=20) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
            r = client.post("/v1/classify", content=chelsea_jpeg, headers={"content-type": "image/jpeg"})
            assert r.status_code == 200, r.text
    finally:
        for sock in hogs:
            sock.close()


def test_when_every_connection_is_busy_health_is_answered_and_the_rest_is_json_503(
        gateway_small: tuple[str, int]) -> None:
    url = "http://{}:{}".format(*gateway_small)
    busy = []
    for _ in range(MAX_CONNECTIONS):  # each one is uploading a body that never finishes: a request in progress
        sock = socket.create_connection(gateway_small)
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 100000\r\n\r\n\xff\xd8")
        busy.append(sock)
    time.sleep(0.5)
    try:
        with httpx.Client(base_url=url, timeout=20) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
            refused = client.get("/v1/models")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["type"] == "Overloaded"
    finally:
        for sock in busy:
            sock.close()
