"""OpenTelemetry: spans received over OTLP/HTTP by a receiver in the test, the caller's traceparent
continued, stage spans nested under the request's; with tracing off, nothing imported or recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra")

from otlp_receiver import OTLPReceiver
from secured_gateway import SecuredGateway, add_key

from visiongate.service import telemetry
from visiongate.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    yield r
    r.close()


def test_a_request_span_reaches_the_collector_continuing_the_callers_trace(
        receiver: OTLPReceiver, lite_repository: Path, tmp_path: Path, chelsea_jpeg: bytes) -> None:
    key = add_key(tmp_path / "keys.json", "web")
    server = SecuredGateway(lite_repository, tmp_path / "gateway.log", env={
        "VISIONGATE_API_KEYS_FILE": str(tmp_path / "keys.json"), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "gateway-under-test"})
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    try:
        server.wait_ready()
        r = httpx.post(server.url + "/v1/classify?model=efficientnet_lite0", content=chelsea_jpeg, timeout=30,
                       headers={"Content-Type": "image/jpeg", "Authorization": f"Bearer {key}",
                                "traceparent": f"00-{trace_id}-{parent}-01"})
        assert r.status_code == 200
        receiver.wait_for(lambda spans: any(s["name"] == "POST /v1/classify" for s in spans))
    finally:
        server.stop()
    (span,) = [s for s in receiver.spans if s["name"] == "POST /v1/classify"]
    assert span["path"] == "/v1/traces" and span["kind"] == SERVER_KIND
    assert span["trace_id"] == trace_id and span["parent_span_id"] == parent
    assert span["attributes"]["http.response.status_code"] == 200
    assert span["attributes"]["http.route"] == "/v1/classify"
    assert span["attributes"]["visiongate.key"] == "web"
    assert span["resource"]["service.name"] == "gateway-under-test"
    assert key not in str(receiver.spans)


def test_stage_spans_nest_under_the_current_span_and_cross_threads(receiver: OTLPReceiver) -> None:
    tracing = telemetry.build_tracing(Settings(otlp_endpoint=receiver.url))
    assert tracing is not None
    outgoing: dict[str, str] = {}
    with telemetry.activated(tracing), telemetry.span("request") as request:
        with telemetry.span("decode", images=2):
            pass
        telemetry.span_since("queue", started=time.monotonic() - 0.05, images=2)
        captured = telemetry.capture()

        def infer_on_a_worker_thread() -> None:
            with telemetry.span("infer", parent=captured, batch=4):
                pass

        worker = threading.Thread(target=infer_on_a_worker_thread)
        worker.start()
        worker.join()
        telemetry.inject(outgoing)
        request_id = format(request.get_span_context().span_id, "016x")
    tracing.shutdown()
    receiver.wait_for(lambda spans: len(spans) >= 4)
    by_name = {s["name"]: s for s in receiver.spans}
    assert {"request", "decode", "queue", "infer"} <= by_name.keys()
    for child in ("decode", "queue", "infer"):
        assert by_name[child]["parent_span_id"] == request_id
        assert by_name[child]["trace_id"] == by_name["request"]["trace_id"]
    assert by_name["decode"]["attributes"] == {"visiongate.images": 2}
    assert by_name["infer"]["attributes"] == {"visiongate.batch": 4}
    assert by_name["queue"]["end"] - by_name["queue"]["start"] >= 40_000_000
    # the context handed to Triton names this trace
    assert outgoing["traceparent"].split("-")[1] == by_name["request"]["trace_id"]


def test_with_tracing_off_spans_cost_nothing_and_a_callers_traceparent_is_passed_on() -> None:
    code = """
import sys
from visiongate.service import telemetry
from visiongate.service.settings import Settings
assert telemetry.build_tracing(Settings()) is None
assert telemetry.span("decode", images=1) is telemetry.NO_SPAN
with telemetry.span("decode") as s:
    s.set_attribute("x", 1)
parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
token = telemetry.remember_incoming([(b"traceparent", parent.encode())])
assert telemetry.inject({}) == {"traceparent": parent}
telemetry.forget_incoming(token)
assert telemetry.inject({}) == {}
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "OpenTelemetry was imported"
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_tracing_on_without_the_package_says_which_extra_to_install() -> None:
    code = """
import sys
sys.modules["opentelemetry.sdk"] = None  # as if the otel extra were not installed
from visiongate.service import telemetry
from visiongate.service.settings import Settings
try:
    telemetry.build_tracing(Settings(tracing="on"))
except telemetry.TracingUnavailable as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "visiongate[otel]" in out.stdout, out.stderr
