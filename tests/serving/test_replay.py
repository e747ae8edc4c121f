"""`skewless replay` against a real `skewless serve` (gunicorn on a free loopback port) in exact mode,
then `skewless flush-log` into a copy of the warehouse: one row per request, idempotent."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timedelta

import pandas as pd
import pytest

from skewless.replay import ReplayError, build_timeline, replay
from tests.helpers import (
    clear_sidecar_keys,
    free_port,
    running_sidecar,
)

D = datetime(2025, 3, 10)


def _row(tx, event_minutes, arrival_minutes=None, label_minutes=None, is_fraud=None):
    event = D + timedelta(minutes=event_minutes)
    arrival = event if arrival_minutes is None else D + timedelta(minutes=arrival_minutes)
    label = None if label_minutes is None else D + timedelta(minutes=label_minutes)
    return {
        "transaction_id": tx,
        "customer_id": "c1",
        "merchant_id": "m1",
        "amount": 5.0,
        "event_timestamp": event,
        "arrival_timestamp": arrival,
        "is_fraud": is_fraud,
        "label_timestamp": label,
    }


def _frame(rows):
    frame = pd.DataFrame(rows)
    for column in ("event_timestamp", "arrival_timestamp", "label_timestamp"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def _kinds(timeline):
    names = {0: "label", 1: "event", 2: "request", 3: "label"}
    return [
        (names[kind], payload["transaction_id"] if isinstance(payload, dict) else payload[0])
        for _, kind, _, payload in timeline
    ]


def test_timeline_follows_arrival_and_labels_wait_for_their_transaction():
    feed = _frame(
        [
            _row("a", 10),
            _row("late", 20, arrival_minutes=300, label_minutes=100, is_fraud=1),
            _row("b", 30, label_minutes=200, is_fraud=0),
            _row("next-day-label", 40, label_minutes=2 * 24 * 60, is_fraud=0),
        ]
    )
    arrivals = _frame([_row("old-late", -60, arrival_minutes=60)])
    history = _frame([_row("h", -3 * 24 * 60, label_minutes=5, is_fraud=1)])
    timeline = build_timeline(feed, arrivals, history, D.date())
    assert _kinds(timeline) == [
        ("label", "h"),  # known at 00:05, before any request
        ("request", "a"),
        ("request", "b"),
        ("request", "next-day-label"),
        ("event", "old-late"),  # an earlier day's event arriving at 01:00: state only
        ("label", "b"),
        ("request", "late"),  # sent at its arrival (05:00), carrying its event time
        ("label", "late"),  # its label (01:40) waited for the transaction to arrive
    ]
    request = next(p for _, kind, _, p in timeline if kind == 2 and p.transaction_id == "late")
    assert request.event_timestamp == D + timedelta(minutes=20)


def test_unreachable_sidecar_is_a_clear_error(serving_env):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ReplayError, match=f"not reachable at {url}"):
        replay(url=url, cfg=serving_env.cfg, redis_url=serving_env.redis_url)


@pytest.fixture(scope="module")
def server(serving_env, tmp_path_factory):
    with running_sidecar(serving_env, tmp_path_factory, "replay") as (port, _, _):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_replay_exact_day_then_flush(server, serving_env, transactions, redis_client, tmp_path):
    from monitoring.flush import TABLE, flush_log
    from serving.log import read_log
    from skewless import warehouse

    day = warehouse.last_event_day(serving_env.cfg.warehouse_path)
    expected = transactions[transactions["event_timestamp"].dt.date == day]
    assert len(expected) > 10

    summary = replay(mode="exact", url=server, cfg=serving_env.cfg, redis_url=serving_env.redis_url)
    assert summary["day"] == day.isoformat() and summary["mode"] == "exact"
    assert summary["sent"] == summary["ok"] == len(expected)
    assert summary["errors"] == {} and summary["modes"] == {"exact": len(expected)}
    assert summary["bootstrap"]["events"] > 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]

    # the event stream got the day's reset, the labels and late events, and every scored request
    from skewless import stream

    entries = [stream.decode_entry(f) for _, f in redis_client.xrange(stream.STREAM)]
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "reset" and entries[0]["as_of"] == datetime.combine(day, datetime.min.time())
    assert kinds.count("label") == summary["labels_applied"] > 0
    assert kinds.count("event") == summary["arrived_events"] + summary["sent"]
    arrivals = [e["arrival"] for e in entries[1:] if e["arrival"] > e["event"]["event_timestamp"]]
    assert arrivals == sorted(arrivals)  # late events and labels reach it in arrival order

    log = read_log(redis_client)
    assert len(log) == len(expected)
    assert log["request_id"].is_unique
    assert sorted(log["transaction_id"]) == sorted(expected["transaction_id"].astype(str))
    assert set(log["mode"]) == {"exact"}
    # each request carried its event time, whatever its arrival
    served = dict(zip(log["transaction_id"], log["event_timestamp"], strict=True))
    for row in expected.itertuples():
        assert served[str(row.transaction_id)] == row.event_timestamp

    # flush into a copy of the warehouse (the shared one stays as the other tests expect it)
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(serving_env.cfg.warehouse_path, copy)
    cfg = dataclasses.replace(serving_env.cfg, warehouse_path=copy)
    first = flush_log(cfg, redis_url=serving_env.redis_url)
    assert first["read"] == first["inserted"] == first["table_rows"] == len(expected)
    second = flush_log(cfg, redis_url=serving_env.redis_url)
    assert second["inserted"] == 0 and second["already_flushed"] == len(expected)
    assert second["table_rows"] == len(expected)

    con = warehouse.connect(copy, read_only=True)
    try:
        rows = con.execute(
            f"select request_id, mode, features from {TABLE} order by stream_id"
        ).fetchdf()
    finally:
        con.close()
    assert sorted(rows["request_id"]) == sorted(log["request_id"])
    assert set(rows["mode"]) == {"exact"}
    assert rows["features"].str.startswith("{").all()  # the vector stays JSON text
    clear_sidecar_keys(redis_client)
    _served_equal_the_arrival_aware_rows(copy)

    # the skew report of the replayed day: exact mode can only differ by late arrival
    from monitoring import skew

    report = skew.skew_report(day, mode="exact", cfg=cfg)
    assert report["requests"] == len(expected)
    assert report["causes"]["staleness"] == 0 and report["causes"]["logic"] == 0, report["causes"]
    if report["causes"]["late_arrival"] == 0:
        assert all(s["match_rate"] == 1.0 for s in report["features"].values())
        assert report["decisions"]["flipped"] == 0
    q = report["quality"]
    assert q["served_average_precision"] == q["offline_average_precision"] or (
        report["causes"]["late_arrival"] > 0
    )


def _served_equal_the_arrival_aware_rows(warehouse_path) -> None:
    """Every feature exact mode served equals the arrival-aware model's row of that transaction
    (the events that had arrived before it). The shared data has no transaction overtaken by a
    late event on this day; tests/serving/test_state.py plants some."""
    from models.datasets import served_features_sql
    from monitoring.flush import TABLE
    from skewless import dbtgen_arrival, warehouse
    from tests.featurecheck import same

    groups = dbtgen_arrival.groups()
    names = [n for g in groups for n in g.feature_names]
    parsed, fields, columns = served_features_sql(names)
    joins = "".join(
        f" join {dbtgen_arrival.model_name(g.name)} as a{i} using (transaction_id)"
        for i, g in enumerate(groups)
    )
    arrived = ", ".join(
        f'a{i}.{n} as "arrived:{n}"' for i, g in enumerate(groups) for n in g.feature_names
    )
    con = warehouse.connect(warehouse_path, read_only=True)
    try:
        rows = con.execute(
            f"select s.transaction_id, s.* exclude (transaction_id), {arrived}"
            f" from (select transaction_id, {fields} from"
            f" (select transaction_id, {parsed} from {TABLE})) as s{joins}"
        ).fetchdf()
    finally:
        con.close()
    assert len(rows) > 10
    differ = {}
    for name, column in zip(names, columns, strict=True):
        for tx, served, arrived_value in zip(
            rows["transaction_id"], rows[column], rows[f"arrived:{name}"], strict=True
        ):
            if not same(served, arrived_value):
                differ.setdefault(name, []).append((tx, served, arrived_value))
    assert differ == {}, {k: v[:3] for k, v in differ.items()}
