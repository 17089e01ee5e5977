"""Admission before the body is read: past the open-request limit, an immediate 503 with Retry-After."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from support import GatewayProcess, wait_ready


def test_a_flood_past_the_open_request_limit_gets_fast_503s_and_health_still_answers(
        tmp_path: Path, chelsea_jpeg: bytes) -> None:
    # the fake backend, each image costing 20 ms: the limit is reached, no model files needed
    server = GatewayProcess(tmp_path, env={"VISIONGATE_BACKEND": "fake", "VISIONGATE_FAKE_ITEM_DELAY_S": "0.02",
                                           "VISIONGATE_MAX_OPEN_REQUESTS": "2", "VISIONGATE_INFERENCE_WORKERS": "1"})
    try:
        wait_ready(server.url)

        async def flood() -> tuple[list[httpx.Response], int]:
            limits = httpx.Limits(max_connections=40)
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
                posts = [client.post("/v1/classify", content=chelsea_jpeg, headers={"content-type": "image/jpeg"})
                         for _ in range(30)]
                tasks = [asyncio.ensure_future(p) for p in posts]
                await asyncio.sleep(0.02)
                health = (await client.get("/healthz")).status_code
                return list(await asyncio.gather(*tasks)), health

        responses, health = asyncio.run(flood())
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses
        refused = [r for r in responses if r.status_code == 503]
        assert all(r.headers["retry-after"] and r.json()["error"]["type"] == "Overloaded" for r in refused)
        assert health == 200
        # and it serves normally the moment the flood is over
        after = httpx.post(f"{server.url}/v1/classify", content=chelsea_jpeg, headers={"content-type": "image/jpeg"})
        assert after.status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert f'visiongate_rejected_total{{reason="Overloaded"}} {float(len(refused))}' in metrics
    finally:
        server.stop()
