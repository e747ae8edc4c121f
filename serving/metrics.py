"""Prometheus metrics of the sidecar, one registry per app.

Under gunicorn with several workers, ``PROMETHEUS_MULTIPROC_DIR`` (set by serving/gunicorn_conf.py
before prometheus_client is imported) makes every worker write its values to files there and
/metrics aggregates them all.

/metrics also exports the newest skew report of each serving mode (the JSON files the skew_report
DAG writes as ``<var>/reports/skew_<mode>_<YYYY-MM-DD>.json``): per feature and mode the match
rate, JS divergence and PSI, the anomalies and the report's day, read when scraped (a file is
parsed again only when it changed). Alerting rules can then fire on the same numbers the gate
uses.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

# monitoring/skew_publish.py writes them (report_paths); the sidecar only reads
_REPORT = re.compile(r"^skew_(?P<mode>[a-z]+)_(?P<day>\d{4}-\d{2}-\d{2})\.json$")
_MEASURES = ("match_rate", "js_divergence", "psi")


class SkewReports:
    """A Prometheus collector of the newest skew report per mode under ``directory``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._parsed: dict[Path, tuple[float, dict]] = {}

    def newest(self) -> dict[str, dict]:
        """{mode: report} of the newest day per mode (files that do not parse are skipped)."""
        newest: dict[str, tuple[str, Path]] = {}
        for path in self.directory.glob("skew_*_*.json"):
            found = _REPORT.match(path.name)
            if found and found["day"] > newest.get(found["mode"], ("", path))[0]:
                newest[found["mode"]] = (found["day"], path)
        out = {}
        for mode, (_, path) in newest.items():
            try:
                mtime = path.stat().st_mtime
                cached = self._parsed.get(path)
                if cached is None or cached[0] != mtime:
                    self._parsed[path] = cached = (mtime, json.loads(path.read_text()))
                out[mode] = cached[1]
            except (OSError, ValueError):
                continue
        return out

    def collect(self):
        reports = self.newest()
        families = {
            m: GaugeMetricFamily(
                f"skewless_skew_{m}", f"{m} of each served feature in the newest skew report",
                labels=["feature", "mode"],
            )
            for m in _MEASURES
        }  # fmt: skip
        anomalies = GaugeMetricFamily(
            "skewless_skew_anomalies",
            "Features past their skew thresholds in the newest report (gating: fails the gate)",
            labels=["mode", "gating"],
        )
        day = GaugeMetricFamily(
            "skewless_skew_report_day_seconds",
            "The day of the newest skew report per mode (Unix time of its midnight, UTC)",
            labels=["mode"],
        )
        for mode, report in sorted(reports.items()):
            for feature, stats in report.get("features", {}).items():
                for measure, family in families.items():
                    if stats.get(measure) is not None:
                        family.add_metric([feature, mode], float(stats[measure]))
            found = report.get("anomalies", [])
            gating = sum(bool(a.get("gate")) for a in found)
            anomalies.add_metric([mode, "true"], gating)
            anomalies.add_metric([mode, "false"], len(found) - gating)
            if report.get("date"):
                midnight = datetime.fromisoformat(f"{report['date']}T00:00:00+00:00")
                day.add_metric([mode], midnight.timestamp())
        yield from (*families.values(), anomalies, day)


# Sub-millisecond resolution where the sidecar lives (p50 ~1 ms), coarse above.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, reports: Path | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.skew = SkewReports(reports) if reports is not None else None
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
            text = generate_latest(registry)
        else:
            text = generate_latest(self.registry)
        if self.skew is not None:
            skew = CollectorRegistry(auto_describe=False)
            skew.register(self.skew)
            text += generate_latest(skew)
        return text, CONTENT_TYPE_LATEST
