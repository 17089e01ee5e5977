"""SIGTERM drains a real uvicorn process: readiness flips first, in-flight requests finish, no 5xx."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from support import GatewayProcess, wait_ready


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
        # uvicorn re-raises the signal once it has shut down cleanly, as a process should
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        server.stop()
