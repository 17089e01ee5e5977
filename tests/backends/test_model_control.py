"""Model control, poll mode: the gateway follows its repository without a restart."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from support import GatewayProcess, encode, photo, wait_ready


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the gateway did not follow its repository"
        time.sleep(0.2)


def test_poll_mode_loads_new_versions_and_models_and_drops_removed_ones(repository: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repository / "efficientnet_lite0", repo / "lite")
    # every version served (Triton's default policy serves only the newest)
    (repo / "lite" / "config.pbtxt").write_text(
        (repo / "lite" / "config.pbtxt").read_text().replace('"efficientnet_lite0"', '"lite"')
        + "version_policy: { all { } }\n")
    server = GatewayProcess(repo, env={"VISIONGATE_MODEL_CONTROL": "poll", "VISIONGATE_MODEL_POLL_INTERVAL_S": "0.5",
                                       "VISIONGATE_READINESS": "any"})
    jpeg = encode(photo("chelsea"))
    try:
        wait_ready(server.url)

        def versions(name: str) -> list[str]:
            r = httpx.get(f"{server.url}/v2/models/{name}")
            return list(r.json()["versions"]) if r.status_code == 200 else []

        assert versions("lite") == ["1"]
        # a new version, exported with other labels: version 2 answers with its own
        shutil.copytree(repo / "lite" / "1", repo / "lite" / "2")
        labels = (repo / "lite" / "labels.txt").read_text().splitlines()
        (repo / "lite" / "2" / "labels.txt").write_text("\n".join(f"v2 {label}" for label in labels) + "\n")
        eventually(lambda: versions("lite") == ["1", "2"])
        newest = httpx.post(f"{server.url}/v1/classify?model=lite&top_k=1", content=jpeg,
                            headers={"content-type": "image/jpeg"}).json()
        older = httpx.post(f"{server.url}/v1/classify?model=lite&top_k=1&version=1", content=jpeg,
                           headers={"content-type": "image/jpeg"}).json()
        assert newest["version"] == 2 and newest["predictions"][0]["label"].startswith("v2 ")
        assert older["version"] == 1 and not older["predictions"][0]["label"].startswith("v2 ")
        # a second model, dropped in as a copy, is picked up; then removed, it is gone from the index
        shutil.copytree(repo / "lite", repo / "lite_copy")
        (repo / "lite_copy" / "config.pbtxt").write_text(
            (repo / "lite_copy" / "config.pbtxt").read_text().replace('"lite"', '"lite_copy"'))
        eventually(lambda: versions("lite_copy") == ["1", "2"])
        shutil.rmtree(repo / "lite_copy")
        eventually(lambda: httpx.get(f"{server.url}/v2/models/lite_copy").status_code == 404)
        index = httpx.post(f"{server.url}/v2/repository/index").json()
        assert {e["name"] for e in index} == {"lite"}
    finally:
        server.stop()
