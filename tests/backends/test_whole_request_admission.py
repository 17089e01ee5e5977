"""A request is admitted once, as a whole: all of its images or none.

On the real ``Batcher`` (inside ``FakeBackend``, each image costing 50 ms): while the model's queue
is near its time budget (1 s), an 8-image request is either refused at once with nothing queued, or
admitted with all 8 images run. Never 5 run and 3 refused (a 503 for work the model still does).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from visiongate.service.backends.fake import FakeBackend
from visiongate.service.errors import Overloaded
from visiongate.service.settings import Settings


def _image() -> np.ndarray:
    return np.full((1, 224, 224, 3), 128, np.uint8)


async def _run_images(backend: FakeBackend, n: int) -> int:
    """Submit an n-image request like the service does; how many images the model ran."""
    ran = 0

    def job() -> dict[str, np.ndarray]:
        nonlocal ran
        ran += 1
        return {"image": _image()}

    with backend.admit("fake_classifier", None, n) as ticket:
        await backend.infer_prepared(ticket, [job] * n)
    return ran


async def test_eight_images_are_admitted_all_or_none_under_load() -> None:
    settings = Settings(backend="fake", inference_workers=1, max_queue_wait_s=1.0)
    backend = FakeBackend(settings, item_delay_s=0.05, models=("fake_classifier",))
    await backend.start()
    try:
        for _ in range(10):  # the queue learns its pace (~50 ms an image) from the batches it runs
            await _run_images(backend, 1)
        # keep the model busy: 20 one-image requests, ~0.9 s of work, under the 1 s budget
        busy = [asyncio.ensure_future(_run_images(backend, 1)) for _ in range(20)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            backend.admit("fake_classifier", None, 8)  # 8 x 50 ms more would blow the budget
        assert sum(await asyncio.gather(*busy)) == 20  # and nothing of the refused request ran
        # idle again: the same 8 images are admitted together and all of them run
        assert await _run_images(backend, 8) == 8
    finally:
        await backend.close()


async def test_a_refused_or_failed_request_gives_its_capacity_back() -> None:
    settings = Settings(backend="fake", inference_workers=1, max_queue_wait_s=0.3)
    backend = FakeBackend(settings, item_delay_s=0.05, models=("fake_classifier",))
    await backend.start()
    try:
        with backend.admit("fake_classifier", None, 5):
            pass  # admitted, then failed before reaching the model (say, a bad image)
        # its 5 reserved images no longer count: a 5-image request fits at once
        assert await _run_images(backend, 5) == 5
    finally:
        await backend.close()
