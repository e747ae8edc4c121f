"""Exact mode: the per-entity event state in Redis, and features equal to the dbt rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.datasets import feature_columns
from serving.state import ExactState, history_frame, pack, state_key, unpack
from skewless.features import request_features_frame
from tests.featurecheck import same
from tests.helpers import score_body

T0 = datetime(2025, 3, 1)

events_strategy = st.fixed_dictionaries(
    {
        "transaction_id": st.text(min_size=1, max_size=40),
        "customer_id": st.text(min_size=1, max_size=40),
        "merchant_id": st.text(min_size=1, max_size=40),
        "event_timestamp": st.datetimes(datetime(1970, 1, 1), datetime(2099, 12, 31)),
        "amount": st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        "is_fraud": st.sampled_from([None, 0, 1]),
        "label_timestamp": st.none() | st.datetimes(datetime(1970, 1, 1), datetime(2099, 12, 31)),
    }
)


@given(events_strategy)
def test_events_pack_and_unpack_exactly(event):
    assert unpack(pack(event)) == event


def _event(tx, minutes, customer="c1", merchant="m1", amount=10.0, **labels):
    return {
        "transaction_id": tx,
        "customer_id": customer,
        "merchant_id": merchant,
        "event_timestamp": T0 + timedelta(minutes=minutes),
        "amount": amount,
        **labels,
    }


def test_add_event_keeps_the_window_plus_the_newest_older_event(redis_client):
    state = ExactState(redis_client)
    # the longest window and its hop; the merchant's windows over label time add the 30 days a
    # label may take to come
    assert state.retention == {"customer": timedelta(days=31), "merchant": timedelta(days=61)}
    day = 24 * 60
    for i, minutes in enumerate([0, day, 2 * day, 40 * day, 75 * day]):
        state.add_event(_event(f"t{i}", minutes))
    kept = [e["transaction_id"] for e in state.events("customer", "c1")]
    # t4 is 75 days in: t3 (day 40) is outside its 30-day window but the newest older event
    assert kept == ["t3", "t4"]
    # the merchant keeps 61 days: t3 is inside them, t2 (day 2) is the newest older event
    assert [e["transaction_id"] for e in state.events("merchant", "m1")] == ["t2", "t3", "t4"]
    window = state.events("customer", "c1", since=T0 + timedelta(days=41))
    assert [e["transaction_id"] for e in window] == ["t4"]
    before = state.events("customer", "c1", until=T0 + timedelta(days=75))
    assert [e["transaction_id"] for e in before] == ["t3"]


def test_add_event_upserts_labels_and_never_forgets_a_known_one(redis_client):
    state = ExactState(redis_client)
    state.add_event(_event("t1", 0))
    labeled = _event("t1", 0, is_fraud=1, label_timestamp=T0 + timedelta(days=2))
    state.set_label(labeled)
    assert state.events("customer", "c1") == [labeled]
    state.add_event(_event("t1", 0))  # the same transaction scored again: label unknown
    assert state.events("merchant", "m1") == [labeled]
    relabeled = _event("t1", 0, is_fraud=0, label_timestamp=T0 + timedelta(days=3))
    state.set_label(relabeled)
    assert state.events("customer", "c1") == [relabeled]
    with pytest.raises(ValueError):
        state.set_label(_event("t1", 0))


def test_bootstrap_replaces_the_state_and_trims_as_of(redis_client):
    state = ExactState(redis_client)
    state.add_event(_event("stale", 0, customer="c9"))
    frame = pd.DataFrame(
        [
            _event("a", 0, is_fraud=0, label_timestamp=T0 + timedelta(days=7)),
            _event("b", 60 * 24 * 10, is_fraud=None, label_timestamp=None),
            _event("c", 60 * 24 * 45, customer="c2", is_fraud=1, label_timestamp=T0),
        ]
    )
    summary = state.bootstrap(frame, as_of=T0 + timedelta(days=74))
    assert summary["events"] == 3
    assert state.events("customer", "c9") == []
    assert [e["transaction_id"] for e in state.events("customer", "c1")] == ["b"]  # newest older
    assert [e["transaction_id"] for e in state.events("merchant", "m1")] == ["b", "c"]
    assert state.events("customer", "c2")[0]["is_fraud"] == 1
    assert redis_client.exists(state_key("customer", "c1"))
    assert state.clear() == 3 and not redis_client.exists(state_key("customer", "c1"))


@pytest.fixture(scope="module")
def dbt_rows(serving_env):
    from skewless import warehouse

    con = warehouse.connect(serving_env.cfg.warehouse_path, read_only=True)
    try:
        return {
            name: con.execute(f"select * from {name} where not is_snapshot").fetchdf()
            for name in ("customer_transaction_windows", "merchant_transaction_windows")
        }
    finally:
        con.close()


@pytest.mark.slow
def test_exact_mode_features_equal_the_dbt_rows(make_app, serving_env, transactions, dbt_rows):
    """Bootstrapped from the events before T, then every later transaction scored in event order
    (labels fed as they become known): each served vector equals the dbt per-transaction row plus
    the request-time features, and the score equals the booster's on that row."""
    app = make_app(SERVING_MODE="exact")
    sidecar = app.extensions["skewless"]
    cutoff = serving_env.cutoff
    split = cutoff - timedelta(days=14)
    history = history_frame(serving_env.cfg, split, by="event")
    assert history["event_timestamp"].max() < split
    sidecar.state.bootstrap(history, as_of=split)

    later = transactions[transactions["event_timestamp"] >= split].reset_index(drop=True)
    assert len(later) > 200
    # one timeline: requests at event time, labels at label time (labels first on ties)
    timeline = [(row.label_timestamp, 0, i) for i, row in later.iterrows()]
    timeline += [(row.event_timestamp, 1, i) for i, row in later.iterrows()]
    client = app.test_client()
    served = {}
    for _, kind, i in sorted(timeline):
        row = later.iloc[i]
        if kind == 0:
            if pd.notna(row["is_fraud"]) and row["transaction_id"] in served:
                sidecar.state.set_label(
                    {
                        **{k: row[k] for k in ("transaction_id", "customer_id", "merchant_id")},
                        "event_timestamp": row["event_timestamp"].to_pydatetime(),
                        "amount": float(row["amount"]),
                        "is_fraud": int(row["is_fraud"]),
                        "label_timestamp": row["label_timestamp"].to_pydatetime(),
                    }
                )
            continue
        response = client.post("/v1/fraud/score", json=score_body(row))
        assert response.status_code == 200, response.get_json()
        served[row["transaction_id"]] = response.get_json()

    expected = (
        later[["transaction_id", "amount", "event_timestamp"]]
        .merge(
            dbt_rows["customer_transaction_windows"].drop(columns=["event_timestamp"]),
            on="transaction_id",
        )
        .merge(
            dbt_rows["merchant_transaction_windows"].drop(columns=["event_timestamp"]),
            on="transaction_id",
        )
    )
    assert len(expected) == len(later)
    request = request_features_frame(
        expected["amount"], expected["event_timestamp"], expected
    ).drop(columns=["amount"])
    expected = pd.concat([expected, request], axis=1)
    columns = feature_columns("fraud")
    mismatches = []
    for row in expected.astype(object).where(expected.notna(), None).to_dict("records"):
        got = served[row["transaction_id"]]["features"]
        mismatches += [
            (row["transaction_id"], name, got[name], row[name])
            for name in columns
            if not same(got[name], row[name])
        ]
    assert mismatches == []

    booster = sidecar.model.current.booster
    matrix = expected[list(booster.feature_name())].to_numpy(dtype="float64")
    offline = booster.predict(matrix)
    online = np.array([served[t]["fraud_probability"] for t in expected["transaction_id"]])
    np.testing.assert_allclose(online, offline, rtol=1e-9, atol=1e-12)
    assert all(body["mode"] == "exact" for body in served.values())
