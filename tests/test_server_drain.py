"""SIGTERM drains a real gateway process: readiness flips first, in-flight requests finish, requests
the kernel had already accepted are answered, what outlives the drain timeout gets a JSON 503, and
the process exits 0."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from pathlib import Path

import httpx
from PIL import Image

from support import GatewayProcess, photo, wait_ready


def test_sigterm_flips_readiness_and_finishes_in_flight_requests(repository: Path, chelsea_jpeg: bytes) -> None:
    server = GatewayProcess(repository, env={"VISIONGATE_SHUTDOWN_DELAY_S": "1.5",
                                             "VISIONGATE_INFERENCE_WORKERS": "1"})
    try:
        wait_ready(server.url)

        async def scenario() -> tuple[list[int], int, int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                in_flight = [asyncio.ensure_future(client.post(
                    "/v1/classify", content=chelsea_jpeg, headers={"content-type": "image/jpeg"}))
                    for _ in range(24)]
                await asyncio.sleep(0.05)
                server.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                ready = (await client.get("/readyz")).status_code
                during = (await client.post("/v1/classify", content=chelsea_jpeg,
                                            headers={"content-type": "image/jpeg"})).status_code
                statuses = [r.status_code for r in await asyncio.gather(*in_flight)]
                return statuses, ready, during

        statuses, ready, during = asyncio.run(scenario())
        assert ready == 503  # load balancers are told first
        assert during == 200  # ...while requests are still served during the delay
        assert statuses == [200] * 24  # nothing in flight is lost
        assert server.proc.wait(30) == 0  # a drain that completed is a clean exit, not "killed by SIGTERM"
    finally:
        server.stop()


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send one request on a new connection and read until the server closes ('' when reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 60)
    except (ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        writer.close()


def post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_requests_the_kernel_accepted_before_sigterm_are_answered(repository: Path, chelsea_jpeg: bytes) -> None:
    """The gateway is stopped (SIGSTOP) while ten requests connect and send: they wait in the listen
    backlog, accepted by the kernel. SIGTERM arrives before the gateway runs again. Closing the
    listener would reset all ten; each one gets its answer instead."""
    server = GatewayProcess(repository)
    try:
        wait_ready(server.url)

        async def scenario() -> list[bytes]:
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                pending = [asyncio.ensure_future(raw_exchange(server.port, post("/v1/classify", chelsea_jpeg)))
                           for _ in range(10)]
                await asyncio.sleep(0.3)
                server.proc.send_signal(signal.SIGTERM)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            return list(await asyncio.gather(*pending))

        answers = asyncio.run(scenario())
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 10
        assert server.proc.wait(30) == 0
    finally:
        server.stop()


def test_requests_still_running_at_the_drain_timeout_get_a_json_503(repository: Path) -> None:
    big = io.BytesIO()
    Image.fromarray(photo("astronaut")).resize((900, 900)).save(big, format="JPEG", quality=90)
    server = GatewayProcess(repository, env={"VISIONGATE_DRAIN_TIMEOUT_S": "0.5"})
    try:
        wait_ready(server.url)

        async def scenario() -> list[bytes]:
            running = [asyncio.ensure_future(raw_exchange(server.port, post("/v1/super-resolve", big.getvalue())))
                       for _ in range(2)]
            await asyncio.sleep(1.0)  # both are tiling (seconds of work on a CPU)
            server.proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*running))

        for answer in asyncio.run(scenario()):
            head, _, body = answer.partition(b"\r\n\r\n")
            lines = head.decode().lower().split("\r\n")
            assert lines[0] == "http/1.1 503 service unavailable", answer[:300]
            assert "retry-after: 1" in lines and "content-type: application/json" in lines
            assert json.loads(body)["error"]["type"] == "ServiceUnavailable"
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
