"""Prometheus metrics, in a registry owned by one app (no process-global collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("visiongate_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("visiongate_request_seconds", "request latency by route",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("visiongate_batch_size", "items per inference batch", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        # set by the admission middleware, the one owner of that count
        self.in_flight = Gauge("visiongate_in_flight_requests", "inference requests being served",
                               registry=self.registry)
        self.rejected = Counter("visiongate_rejected", "requests refused by overload protection or "
                                "deadlines, by error type (Overloaded, BackendUnavailable, DeadlineExceeded...)",
                                ["reason"], registry=self.registry)

    def observe_batch(self, model: str, size: int) -> None:
        self.batch_size.labels(model).observe(size)
