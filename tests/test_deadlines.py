"""A caller's X-Request-Timeout header shortens the request's deadline (never lengthens it)."""

from __future__ import annotations

import httpx
import pytest

from visiongate.service.deadlines import parse_timeout
from visiongate.service.errors import InvalidArgument


def post(gateway: str, body: bytes, timeout_header: str) -> httpx.Response:
    return httpx.post(f"{gateway}/v1/classify", content=body, timeout=30,
                      headers={"content-type": "image/jpeg", "X-Request-Timeout": timeout_header})


def test_a_generous_deadline_is_served(fake_gateway: str, chelsea_jpeg: bytes) -> None:
    r = post(fake_gateway, chelsea_jpeg, "30")
    assert r.status_code == 200, r.text


def test_a_deadline_that_passes_before_the_model_is_a_504_not_a_model_run(fake_gateway: str,
                                                                          chelsea_jpeg: bytes) -> None:
    r = post(fake_gateway, chelsea_jpeg, "0.000001")
    assert r.status_code == 504, r.text
    assert r.json()["error"]["type"] == "DeadlineExceeded"


def test_a_malformed_deadline_is_a_400(fake_gateway: str, chelsea_jpeg: bytes) -> None:
    r = post(fake_gateway, chelsea_jpeg, "soon")
    assert r.status_code == 400
    assert "X-Request-Timeout" in r.json()["error"]["message"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", ""])
def test_only_positive_finite_seconds_are_deadlines(value: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_timeout(value)
    assert parse_timeout(" 0.25 ") == 0.25
