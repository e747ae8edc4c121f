"""Prometheus metrics of the sidecar, one registry per app.

Under gunicorn with several workers, ``PROMETHEUS_MULTIPROC_DIR`` (set by serving/gunicorn_conf.py
before prometheus_client is imported) makes every worker write its values to files there and
/metrics aggregates them all.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Sub-millisecond resolution where the sidecar lives (p50 ~1 ms), coarse above.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "skewless_requests",
            "HTTP requests by endpoint, serving mode and status code",
            ["endpoint", "mode", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "skewless_request_seconds",
            "Request latency in the sidecar by endpoint, serving mode and status code",
            ["endpoint", "mode", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.feature_read = Histogram(
            "skewless_feature_read_seconds",
            "Time to read or compute the online features (one Redis round trip) by mode",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "skewless_decisions",
            "Scored transactions by decision",
            ["decision"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "skewless_model_info",
            "The model version serving (1) in this process",
            ["name", "version"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )

        self._children: dict = {}

    def observe_request(self, endpoint: str, mode: str, status: str, seconds: float) -> None:
        """Counts one request and its latency (the labelled children are looked up once)."""
        key = ("request", endpoint, mode, status)
        children = self._children.get(key)
        if children is None:
            labels = (endpoint, mode, status)
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_scoring(self, mode: str, read_seconds: float, decision: str) -> None:
        """The feature-read time of a mode and the decision of one scored transaction."""
        key = ("score", mode, decision)
        children = self._children.get(key)
        if children is None:
            children = (self.feature_read.labels(mode), self.decisions.labels(decision))
            self._children[key] = children
        children[0].observe(read_seconds)
        children[1].inc()

    def model_changed(self, old, new) -> None:
        if old is not None:
            self.model_info.labels(old.name, old.version).set(0)
        self.model_info.labels(new.name, new.version).set(1)

    @staticmethod
    def multiprocess() -> bool:
        """Whether values go to files: decided when prometheus_client was imported (the variable
        may be set later by others - feast.metrics sets it on import - without effect)."""
        from prometheus_client import values

        return values.ValueClass is not values.MutexValue and bool(
            os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        )

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
