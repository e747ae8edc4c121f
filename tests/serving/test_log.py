"""The serving log stream reads back into a DataFrame, in order, with its types."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from serving import log as serving_log
from tests.helpers import score_body

pytestmark = pytest.mark.slow  # on the built pipeline (dbt, Feast, MLflow)


def test_read_log_round_trips_entries_in_batches(redis_client):
    entries = []
    for i in range(25):
        entry = {
            "request_id": f"r{i}",
            "transaction_id": f"t{i}",
            "customer_id": "c1",
            "merchant_id": "m1",
            "amount": 1.5 * i,
            "event_timestamp": f"2025-04-14T10:00:{i:02d}",
            "served_at": f"2025-11-01T08:00:00.{i:06d}",
            "mode": "exact",
            "features": {"a": i, "b": None, "c": 0.1 * i},
            "features_missing": ["customer"] if i % 2 else [],
            "feature_timestamps": {"g": None},
            "model_name": "fraud",
            "model_version": "3",
            "fraud_probability": 1 / (i + 3),
            "decision": "approve",
            "latency_ms": 0.75,
        }
        serving_log.append(redis_client, entry, maxlen=1000)
        entries.append(entry)
    log = serving_log.read_log(redis_client, batch=7)
    assert len(log) == 25 and list(log["request_id"]) == [e["request_id"] for e in entries]
    assert log["event_timestamp"].dtype.kind == "M" and log["served_at"].dtype.kind == "M"
    assert log["event_timestamp"].iloc[3] == pd.Timestamp("2025-04-14T10:00:03")
    assert log["fraud_probability"].tolist() == [e["fraud_probability"] for e in entries]
    assert log["features"].iloc[4] == {"a": 4, "b": None, "c": 0.1 * 4}
    assert log["features_missing"].iloc[1] == ["customer"]
    features = serving_log.feature_frame(log)
    assert list(features.columns) == ["a", "b", "c"] and math.isnan(features["b"].iloc[0])
    part = serving_log.read_log(redis_client, start=log["stream_id"].iloc[20])
    assert list(part["request_id"]) == [f"r{i}" for i in range(20, 25)]


def test_an_empty_log_is_an_empty_frame(redis_client):
    log = serving_log.read_log(redis_client)
    assert log.empty and "fraud_probability" in log.columns


def test_the_stream_is_capped(make_app, redis_client, transactions):
    client = make_app(SERVING_LOG_MAXLEN=10).test_client()
    for _, row in transactions.tail(300).iterrows():
        assert client.post("/v1/fraud/score", json=score_body(row)).status_code == 200
    # MAXLEN ~ trims whole macro nodes (100 entries by default): bounded, not exact
    assert redis_client.xlen(serving_log.STREAM) < 300
