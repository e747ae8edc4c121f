"""Exact mode: the per-entity tiles in Redis, and features equal to the evaluator and the dbt rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models.datasets import feature_columns
from serving.state import ExactState, history_frame, state_key
from skewless.evaluate import evaluate
from skewless.features import FEATURE_SERVICES, request_features_frame
from tests.featurecheck import same
from tests.helpers import score_body
from tests.properties import examples
from tests.skewless.test_feature_equivalence import _raw, _staged
from tests.skewless.test_tiles import arrivals, known_at, within_minutes

FRAUD_V1 = next(s for s in FEATURE_SERVICES if s.name == "fraud_v1")

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


@given(st.lists(events_strategy, max_size=5))
def test_events_and_labels_are_kept_exactly(events):
    """What a minute of raw events and of labels reads back is what went in: id, times and the
    columns the entity's tiles aggregate (the customer's amount and merchants, the merchant's
    labels)."""
    codecs = ExactState(None).codecs
    assert codecs["customer"].columns == ("amount", "merchant_id")
    assert codecs["merchant"].columns == codecs["merchant"].label_columns == ("is_fraud",)
    labelled = [e["is_fraud"] is not None and e["label_timestamp"] is not None for e in events]
    labels = [e for e, known in zip(events, labelled, strict=True) if known]
    for codec in codecs.values():
        kept = ["transaction_id", "event_timestamp", "label_timestamp", *codec.columns]
        expected = [
            {k: e[k] for k in kept} | ({} if known else {"label_timestamp": None})
            for e, known in zip(events, labelled, strict=True)
        ]
        assert codec.events([b"".join(codec.event_frame(e) for e in events)]) == expected
        kept = ["event_timestamp", "label_timestamp", *codec.label_columns]
        frames = b"".join(codec.label_frame(e) for e in labels)
        assert codec.labels([frames]) == [{k: e[k] for k in kept} for e in labels]


def _event(tx, minutes, customer="c1", merchant="m1", amount=10.0, **labels):
    return {
        "transaction_id": tx,
        "customer_id": customer,
        "merchant_id": merchant,
        "event_timestamp": T0 + timedelta(minutes=minutes),
        "amount": amount,
        **labels,
    }


def _features(state, at, customer="c1", merchant="m1") -> dict:
    states = state.read([("customer", customer), ("merchant", merchant)], at)
    return {
        name: value
        for group, entity in zip(FRAUD_V1.groups, states, strict=True)
        for name, value in state.features(group, entity, at).items()
    }


def _evaluated(events, at, customer="c1", merchant="m1") -> dict:
    keys = {"customer_id": customer, "merchant_id": merchant}
    events = [{"is_fraud": None, "label_timestamp": None, **e} for e in events]
    return {
        name: value
        for group in FRAUD_V1.groups
        for name, value in evaluate(
            group,
            [e for e in events if e[group.entity.join_key] == keys[group.entity.join_key]],
            at,
        ).items()
    }


def test_the_state_keeps_tiles_and_only_the_recent_raw_events(redis_client):
    state = ExactState(redis_client, lateness=timedelta(hours=6))
    day = 24 * 60
    events = [
        _event(f"t{i}", m, amount=i + 1.0)
        for i, m in enumerate([0, day, 2 * day, 40 * day, 75 * day, 75 * day + 30])
    ]
    for event in events:
        state.add_event(event)
    # raw events: the 6 hours before the newest one, and the newest minute before them (the last
    # event before a late request); everything else is in tiles
    assert [e["transaction_id"] for e in state.events("customer", "c1")] == ["t3", "t4", "t5"]
    for at in (
        T0 + timedelta(days=75, minutes=31),
        T0 + timedelta(days=80),
        T0 + timedelta(days=200),
    ):
        got, expected = _features(state, at), _evaluated(events, at)
        assert {n: (got[n], v) for n, v in expected.items() if not same(got[n], v)} == {}
    # a ring of tiles per length: the hash does not grow with the entity's traffic
    tiles = state_key("merchant", "m1", part="tiles")
    fields = redis_client.hlen(tiles)
    for i in range(300):
        state.add_event(_event(f"u{i}", 76 * day + i * 7))
    layout = state.layouts["merchant"]
    bound = sum(layout.slots.values()) + sum(layout.label_slots.values()) + 3
    assert fields <= redis_client.hlen(tiles) <= bound


def _calls(redis_client, command: str) -> int:
    return redis_client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def test_the_state_script_runs_by_its_hash_and_is_loaded_again_when_redis_lost_it(redis_client):
    """Events go to Redis as EVALSHA; after SCRIPT FLUSH (as after a restart) the NOSCRIPT
    commands alone are sent again as EVAL, once: the batch's other commands are not repeated."""
    state = ExactState(redis_client)
    events = [_event("t1", 0), _event("t2", 5, amount=3.5), _event("t3", 9, merchant="m2")]
    state.add_event(events[0])
    redis_client.config_resetstat()
    state.add_event(events[1])
    assert (_calls(redis_client, "evalsha"), _calls(redis_client, "eval")) == (2, 0)
    redis_client.script_flush()
    redis_client.config_resetstat()
    replies = state.round_trip(
        *state.add_event_commands(events[2]), ("XADD", "skewless:test:log", "*", "f", "v")
    )
    assert (_calls(redis_client, "evalsha"), _calls(redis_client, "eval")) == (2, 2)
    assert replies[:2] == [1, 1] and redis_client.xlen("skewless:test:log") == 1
    at = T0 + timedelta(minutes=10)
    for merchant in ("m1", "m2"):  # every event is in the state once
        got, expected = (
            _features(state, at, merchant=merchant),
            _evaluated(events, at, merchant=merchant),
        )
        assert {n: (got[n], v) for n, v in expected.items() if not same(got[n], v)} == {}
    redis_client.config_resetstat()
    state.add_event(_event("t4", 12))
    assert (_calls(redis_client, "evalsha"), _calls(redis_client, "eval")) == (2, 0)


def test_labels_count_once_and_a_known_one_is_never_forgotten(redis_client):
    state = ExactState(redis_client)
    state.add_event(_event("t1", 0))
    labeled = _event("t1", 0, is_fraud=1, label_timestamp=T0 + timedelta(minutes=30))
    state.set_label(labeled)
    kept = {"transaction_id", "event_timestamp", "label_timestamp", "is_fraud"}
    expected = [{k: v for k, v in labeled.items() if k in kept}]
    assert state.events("merchant", "m1") == expected
    state.add_event(_event("t1", 0))  # the same transaction scored again: label unknown
    assert state.events("merchant", "m1") == expected
    state.set_label(_event("t1", 0, is_fraud=0, label_timestamp=T0 + timedelta(minutes=40)))
    assert state.events("merchant", "m1") == expected  # a label is final
    # the customer's windows read no label: its labels are not kept
    assert not redis_client.exists(state_key("customer", "c1", part="labels"))
    assert redis_client.exists(state_key("merchant", "m1", part="labels"))
    at = T0 + timedelta(hours=1)
    got = _features(state, at)
    assert got == _evaluated([labeled], at)
    assert got["customer_tx_count_1d"] == 1 and got["merchant_recent_label_fraud_rate_1d"] == 1.0
    with pytest.raises(ValueError):
        state.set_label(_event("t1", 0))


def test_a_label_replaces_its_event_inside_its_minute(redis_client):
    """Three events of one minute share one member of the raw set: the middle one's label
    rewrites only its own frame, and a second copy of an event is not added."""
    state = ExactState(redis_client)
    events = [_event(tx, 5, amount=a) for tx, a in (("a", 1.0), ("b", 2.0), ("c", 3.0))]
    for event in events:
        state.add_event(event)
    state.add_event(events[0])
    state.set_label({**events[1], "is_fraud": 1, "label_timestamp": T0 + timedelta(minutes=6)})
    assert redis_client.zcard(state_key("customer", "c1", part="raw")) == 1
    got = state.events("customer", "c1")
    assert [(e["transaction_id"], e["amount"], e["label_timestamp"]) for e in got] == [
        ("a", 1.0, None),
        ("b", 2.0, T0 + timedelta(minutes=6)),
        ("c", 3.0, None),
    ]
    at = T0 + timedelta(minutes=7)
    labeled = [
        events[0],
        {**events[1], "is_fraud": 1, "label_timestamp": T0 + timedelta(minutes=6)},
        events[2],
    ]
    assert _features(state, at) == _evaluated(labeled, at)


def test_bootstrap_replaces_the_state(redis_client):
    state = ExactState(redis_client)
    state.add_event(_event("stale", 0, customer="c9"))
    events = [
        _event("a", 0, is_fraud=0, label_timestamp=T0 + timedelta(days=7)),
        _event("b", 60 * 24 * 10, is_fraud=None, label_timestamp=None),
        _event("c", 60 * 24 * 45, customer="c2", is_fraud=1, label_timestamp=T0),
        _event("d", 60 * 24 * 50 - 60, customer="c2"),
    ]
    as_of = T0 + timedelta(days=50)
    summary = state.bootstrap(pd.DataFrame(events), as_of=as_of)
    assert summary["events"] == 4 and summary["keys"] == 3
    assert not redis_client.exists(state_key("customer", "c9"))
    # raw: the lateness allowance before as_of and the newest minute before it; the older events
    # are in the tiles only
    assert [e["transaction_id"] for e in state.events("customer", "c1")] == ["b"]
    assert [e["transaction_id"] for e in state.events("merchant", "m1")] == ["c", "d"]
    for customer in ("c1", "c2"):
        got = _features(state, as_of, customer=customer)
        expected = _evaluated(events, as_of, customer=customer)
        assert {n: (got[n], v) for n, v in expected.items() if not same(got[n], v)} == {}
    # tiles of c1, c2 and m1, their raw sets
    assert state.clear() == 6 and not redis_client.exists(state_key("customer", "c1"))


# The state's script in Redis against the evaluator, as tests/skewless/test_tiles.py holds the
# tiles' algebra: events at their event time, labels at their label time, requests now and later.
@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # cleared in every example
)
@given(raw=st.lists(within_minutes, min_size=1, max_size=25))
# Late requests after the two newest events, their last event in an earlier minute within the
# lateness, or older than it (the newest minute before the lateness stays raw).
@example(raw=[_raw("c1", "m1", timedelta(minutes=m), is_fraud=None, label_delay=timedelta(0))
              for m in (60, 120, 160, 165, 190)])  # fmt: skip
@example(raw=[_raw("c1", "m1", timedelta(minutes=m), is_fraud=None, label_delay=timedelta(0))
              for m in (60, 90, 160, 165, 190)])  # fmt: skip
def test_the_state_in_redis_equals_the_evaluator(redis_client, raw):
    state = ExactState(redis_client, lateness=timedelta(hours=1))
    state.clear()
    events = _staged(raw)
    arrived: list[dict] = []
    for at, kind, i in arrivals(events):
        e = events[i]
        if kind != 1:
            state.set_label(e)
            continue
        for t in (at, at - timedelta(minutes=30)):
            known = known_at(arrived, t)
            got = _features(state, t, e["customer_id"], e["merchant_id"])
            expected = _evaluated(known, t, e["customer_id"], e["merchant_id"])
            assert {n: (got[n], v) for n, v in expected.items() if not same(got[n], v)} == {}
        state.add_event({**e, "is_fraud": None, "label_timestamp": None})
        arrived.append(e)


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


def _plant_late_events(events: pd.DataFrame, since: datetime, per_key: int = 8) -> list[str]:
    """Makes some transactions after ``since`` arrive a minute after the next transaction of
    their merchant (or customer) when that one comes within 4 hours (inside the lateness
    allowance): that next one is scored without them. Returns their ids."""
    planted: list[str] = []
    for key in ("merchant_id", "customer_id"):
        ordered = events[events["event_timestamp"] >= since].sort_values([key, "event_timestamp"])
        following = ordered.groupby(key)[["event_timestamp", "arrival_timestamp"]].shift(-1)
        gap = following["event_timestamp"] - ordered["event_timestamp"]
        chosen = ordered[(gap > timedelta(0)) & (gap < timedelta(hours=4))]
        chosen = chosen[~chosen["transaction_id"].isin(planted)].head(per_key)
        for index in chosen.index:
            events.loc[index, "arrival_timestamp"] = following.loc[
                index, "arrival_timestamp"
            ] + timedelta(minutes=1)
            planted.append(events.loc[index, "transaction_id"])
    return planted


@pytest.mark.slow
def test_exact_mode_serves_the_arrival_aware_rows_late_events_included(
    make_app, serving_env, transactions
):
    """Transactions that arrive after later ones of their entity: exact mode, fed in arrival
    order as the replay feeds it, serves each transaction the arrival-aware model's row (the
    events that had arrived before it), which differs from the offline truth where an earlier
    event was still on its way."""
    from skewless import dbtgen_arrival
    from tests.skewless.test_arrival import run_as_arrived

    app = make_app(SERVING_MODE="exact")
    sidecar = app.extensions["skewless"]
    split = serving_env.cutoff - timedelta(days=4)
    events = transactions.copy()
    planted = _plant_late_events(events, split)
    assert len(planted) >= 10

    columns = ["transaction_id", "customer_id", "merchant_id", "event_timestamp", "amount"]
    columns += ["is_fraud", "arrival_timestamp", "label_timestamp"]
    records = [
        {c: (None if pd.isna(r[c]) else r[c]) for c in columns}
        for r in events[columns].astype(object).to_dict("records")
    ]
    for record in records:
        for c in ("event_timestamp", "arrival_timestamp", "label_timestamp"):
            record[c] = pd.Timestamp(record[c]).to_pydatetime()
        record["is_fraud"] = None if record["is_fraud"] is None else int(record["is_fraud"])
    truth, expected = {}, {}
    for group in dbtgen_arrival.groups():
        offline, arrived = run_as_arrived(group, records, serving_env.cutoff)
        truth[group.name] = {r["transaction_id"]: r for r in offline}
        expected[group.name] = {r["transaction_id"]: r for r in arrived}

    before = events[(events["event_timestamp"] < split) & (events["arrival_timestamp"] < split)]
    sidecar.state.bootstrap(before, as_of=split)
    # one timeline in arrival order: earlier transactions arriving late (into the state),
    # requests, and labels once known and their transaction arrived
    timeline = []
    for i, row in events.iterrows():
        if row["event_timestamp"] >= split:
            timeline.append((row["arrival_timestamp"], 2, row["event_timestamp"], i))
            if pd.notna(row["is_fraud"]):
                at = max(row["label_timestamp"], row["arrival_timestamp"])
                timeline.append((at, 3 if at == row["arrival_timestamp"] else 0, at, i))
        elif row["arrival_timestamp"] >= split:
            timeline.append((row["arrival_timestamp"], 1, row["event_timestamp"], i))
    client = app.test_client()
    served = {}
    for _, kind, _, i in sorted(
        timeline, key=lambda item: item[:3] + (events.loc[item[3], "transaction_id"],)
    ):
        row = events.loc[i]
        event = {
            **{k: row[k] for k in ("transaction_id", "customer_id", "merchant_id")},
            "event_timestamp": row["event_timestamp"].to_pydatetime(),
            "amount": float(row["amount"]),
        }
        if pd.notna(row["is_fraud"]):
            event |= {
                "is_fraud": int(row["is_fraud"]),
                "label_timestamp": row["label_timestamp"].to_pydatetime(),
            }
        if kind == 1:
            sidecar.state.add_event(event)
        elif kind == 2:
            response = client.post("/v1/fraud/score", json=score_body(row))
            assert response.status_code == 200, response.get_json()
            served[row["transaction_id"]] = response.get_json()["features"]
        else:
            sidecar.state.set_label(event)

    assert len(served) > 100
    mismatches, overtaken = [], set()
    for group in dbtgen_arrival.groups():
        for transaction_id, features in served.items():
            row = expected[group.name][transaction_id]
            for name in group.feature_names:
                if not same(features[name], row[name]):
                    mismatches.append((transaction_id, name, features[name], row[name]))
                if not same(features[name], truth[group.name][transaction_id][name]):
                    overtaken.add(transaction_id)
    assert mismatches == []
    # the late events showed: those scored before them differ from the offline truth
    assert len(overtaken) >= 5
