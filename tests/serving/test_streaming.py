"""Streaming mode with real parts: `skewless stream-consumer` processes reading the session's Redis
(a database of their own), real `feast apply`/push, and the sidecar reading the stream views.

Every test runs twice: on a single Redis server and on a real three-node Redis Cluster
(SKEWLESS_REDIS_CLUSTER=true), where the consumer's transactions, Feast's pushes and the
sidecar's reads cross nodes."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from serving.readers import StreamingReader
from serving.state import ExactState
from skewless import redis_server, settings, stream
from skewless.evaluate import evaluate
from skewless.feast_layout import feast_project
from skewless.features import FEATURE_SERVICES
from tests.featurecheck import identical
from tests.helpers import Consumer, fresh_cluster, fresh_redis_db

FRAUD_V1 = next(s for s in FEATURE_SERVICES if s.name == "fraud_v1")
CUSTOMER, MERCHANT = FRAUD_V1.groups
T = datetime(2025, 5, 1)  # after the warehouse's days: the reset test goes back in time
US = timedelta(microseconds=1)
pytestmark = pytest.mark.slow


def _event(tx, at, customer="c1", merchant="m1", amount=10.0):
    return {
        "transaction_id": tx,
        "customer_id": customer,
        "merchant_id": merchant,
        "amount": amount,
        "event_timestamp": at,
    }


@pytest.fixture(scope="module", params=["server", "cluster"])
def stream_env(request, serving_env):
    """The serving env on a Redis of its own: a fresh database of the session's server, or the
    session's cluster, emptied."""
    if request.param == "cluster":
        url = fresh_cluster(request.getfixturevalue("redis_cluster_url"))
        cfg = dataclasses.replace(serving_env.cfg, redis_cluster=True)
        return dataclasses.replace(serving_env, cfg=cfg, redis_url=url)
    url = fresh_redis_db(request.getfixturevalue("redis_url"))
    return dataclasses.replace(serving_env, redis_url=url)


@pytest.fixture(scope="module")
def consumer(stream_env, tmp_path_factory):
    runner = Consumer(stream_env, tmp_path_factory.mktemp("stream-consumer"))
    runner.start("--lag", "0", "--allowed-lateness", "600")
    yield runner
    runner.stop()
    runner.client.close()


@pytest.fixture(scope="module")
def reader(stream_env):
    client = redis_server.connect(stream_env.redis_url, cluster=stream_env.cfg.redis_cluster)
    project, _ = feast_project(settings.PROJECT_ROOT / "feature_repo")
    yield StreamingReader(client, FRAUD_V1, project)
    client.close()


@pytest.fixture(scope="module")
def feast_store(stream_env):
    from skewless import pipeline

    return pipeline.feature_store(stream_env.cfg, stream_env.redis_url)


def _read(reader, customer, merchant):
    return reader.read_raw({"customer_id": customer, "merchant_id": merchant})


def test_lag_zero_streams_the_declared_features(consumer, reader, feast_store):
    """Each update is pushed as of just after its event; the row equals skewless.evaluate over
    the same events, and the direct reader returns what Feast's get_online_features returns."""
    m, day = timedelta(minutes=1), timedelta(days=1)
    # a fraud at m1 a week and an hour before, labelled a day before T: in the shifted risk window
    old = _event("old", T - 7 * day - 60 * m, customer="c0")
    old_label = {**old, "is_fraud": 1, "label_timestamp": T - day}
    events = [
        _event("a", T, amount=12.5),
        _event("b", T + 5 * m, amount=40.0),
        _event("c", T + 10 * m, merchant="m2", amount=7.25),
    ]
    consumer.add(old)
    consumer.add(old_label, kind="label", arrival=T - day)
    for event in events[:2]:
        consumer.add(event)
    label = {**events[0], "is_fraud": 1, "label_timestamp": T + 7 * m}
    consumer.add(label, kind="label", arrival=T + 7 * m)
    consumer.add(events[2])
    consumer.add(_event("tick", T + 20 * m, customer="tick", merchant="tick"))
    # everything but the tick is due before the watermark (T+20m); the tick waits for a later one
    status = consumer.wait_for(read=7, applied=6)
    assert status["watermark"] == (T + 20 * m).isoformat() and status["dropped_late"] == "0"

    raw = _read(reader, "c1", "m1")
    ts, values = raw[CUSTOMER.name]
    as_of = T + 10 * m + US  # just after its latest event, which counts
    assert ts.replace(tzinfo=None) == as_of
    assert values == evaluate(CUSTOMER, events, as_of)
    assert values["customer_tx_count_1h"] == 3 and values["customer_merchant_distinct_1h"] == 2
    ts, values = raw[MERCHANT.name]
    as_of = T + 7 * m + US  # the label was its latest update
    assert ts.replace(tzinfo=None) == as_of
    labeled = [old_label, {**events[0], "is_fraud": 1, "label_timestamp": T + 7 * m}, events[1]]
    labeled[2] = {**labeled[2], "is_fraud": None, "label_timestamp": None}
    assert values == evaluate(MERCHANT, labeled, as_of)
    assert values["merchant_fraud_risk_1d"] == 1.0 and values["merchant_tx_count_1d"] == 2
    assert _read(reader, "tick", "tick")[CUSTOMER.name] == (None, None)  # not due yet

    rows = [
        {"customer_id": "c1", "merchant_id": "m1"},
        {"customer_id": "c1", "merchant_id": "m2"},
        {"customer_id": "nobody", "merchant_id": "tick"},
    ]
    refs = [
        f"{stream.stream_view_name(g.name)}:{name}"
        for g in FRAUD_V1.groups
        for name in g.feature_names
    ]
    expected = feast_store.get_online_features(features=refs, entity_rows=rows).to_dict()
    mismatches = []
    for i, row in enumerate(rows):
        got = {}
        for _, group_values in _read(reader, row["customer_id"], row["merchant_id"]).values():
            got.update(group_values or {})
        for group in FRAUD_V1.groups:
            for name in group.feature_names:
                if not identical(got.get(name), expected[name][i]):
                    mismatches.append((row, name, got.get(name), expected[name][i]))
    assert mismatches == []


def test_events_beyond_the_allowed_lateness_are_dropped_and_counted(consumer, reader):
    mark = T + timedelta(minutes=20)
    consumer.add(_event("too-late", mark - timedelta(seconds=601), customer="c2"))
    consumer.add(_event("late-ok", mark - timedelta(seconds=300), customer="c3"))
    consumer.add(_event("tick2", mark + timedelta(minutes=1), customer="tick", merchant="tick"))
    consumer.wait_for(read=10, dropped_late=1, applied=8)
    assert _read(reader, "c2", "m1")[CUSTOMER.name] == (None, None)
    ts, values = _read(reader, "c3", "m1")[CUSTOMER.name]
    assert values["customer_tx_count_1h"] == 1
    # an entry that arrives behind the watermark is seen at the watermark: due then
    assert ts.replace(tzinfo=None) == mark + US


def test_sidecar_serves_the_streamed_features(consumer, reader, make_app, stream_env):
    app = make_app(
        REDIS_URL=stream_env.redis_url, SETTINGS=stream_env.cfg, SERVING_MODE="streaming"
    )
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    at = T + timedelta(minutes=30)
    body = {"transaction_id": "s1", "customer_id": "c1", "merchant_id": "m1", "amount": 20.0}
    response = client.post("/v1/fraud/score", json={**body, "event_timestamp": at.isoformat()})
    assert response.status_code == 200, response.get_json()
    served = response.get_json()
    assert served["mode"] == "streaming" and served["features_missing"] == []
    raw = _read(reader, "c1", "m1")
    streamed = {**raw[CUSTOMER.name][1], **raw[MERCHANT.name][1]}
    assert "customer_tx_count_1h" in served["features"]
    for name, value in served["features"].items():
        if name in streamed:
            assert identical(value, streamed[name]), name
    # the scored transaction went onto the event stream in the same round trip as the log
    ((entry_id, fields),) = consumer.client.xrevrange(stream.STREAM, count=1)
    assert stream.decode_entry(fields)["event"] == {**body, "event_timestamp": at}
    unknown = client.post(
        "/v1/fraud/score",
        json={
            **body,
            "transaction_id": "s2",
            "customer_id": "nobody",
            "event_timestamp": at.isoformat(),
        },
    ).get_json()
    assert unknown["features_missing"] == ["customer"]
    assert unknown["features"]["customer_tx_count_1h"] == 0
    consumer.wait_for(read=12)  # both scored transactions reached the consumer


def test_a_consumer_that_never_ran_is_a_503(make_app):
    app = make_app(SERVING_MODE="streaming")  # the serving tests' database: no consumer there
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503 and "skewless stream-consumer" in ready.get_json()["reason"]


def test_a_restart_resumes_and_the_lag_holds_events_back(consumer, reader):
    """Entries written while the consumer is down are read once after its restart (here with a
    120 s lag): an event is applied only once the watermark has passed its arrival + lag."""
    consumer.stop()
    status = consumer.status()
    read, applied = int(status["read"]), int(status["applied"])
    assert consumer.client.zcard(stream.HELD_KEY) == 2  # the two scored transactions
    t2 = T + timedelta(days=1)
    s = timedelta(seconds=1)
    first = _event("d1", t2, customer="c4", merchant="m4", amount=3.0)
    consumer.add(first)
    consumer.add(_event("d0", t2 + 100 * s, customer="c5", merchant="m4"))
    last = consumer.add(_event("d2", t2 + 130 * s, customer="c4", merchant="m4", amount=4.0))

    consumer.start("--lag", "120", "--allowed-lateness", "600")
    # watermark t2+130s: the held transactions and d1 (due t2+120s) apply; d0 and d2 wait
    consumer.wait_for(read=read + 3, applied=applied + 3)
    ts, values = _read(reader, "c4", "m4")[CUSTOMER.name]
    assert ts.replace(tzinfo=None) == t2 + 120 * s + US  # pushed when due, not when read
    assert values == evaluate(CUSTOMER, [first], t2 + 120 * s + US)
    assert _read(reader, "c5", "m4")[CUSTOMER.name] == (None, None)  # 30 s old, held back
    assert consumer.client.zcard(stream.HELD_KEY) == 2
    (group,) = consumer.client.xinfo_groups(stream.STREAM)
    # every entry delivered once and acknowledged, the last one included
    assert group["pending"] == 0 and group["last-delivered-id"].decode() == last


def test_reset_restarts_from_the_warehouse_history(consumer, reader, stream_env, transactions):
    """The replay's reset: the consumer's rows as of a day's start equal exact mode's features
    after its bootstrap; newer rows of an earlier run are replaced, not kept."""
    from skewless.replay import bootstrap_state, reset_stream

    day = transactions["event_timestamp"].max().date()
    start = datetime.combine(day, datetime.min.time())
    reset_id = reset_stream(consumer.client, day, wait=60)
    status = consumer.status()
    assert status["reset_id"] == reset_id and status["watermark"] == start.isoformat()
    assert consumer.client.zcard(stream.HELD_KEY) == 0

    exact = ExactState(consumer.client)
    bootstrap_state(exact, stream_env.cfg, day)
    before = transactions[transactions["arrival_timestamp"] < start]
    pairs = before[["customer_id", "merchant_id"]].drop_duplicates().head(40)
    for customer, merchant in pairs.itertuples(index=False):
        raw = _read(reader, customer, merchant)
        keys = [("customer", customer), ("merchant", merchant)]
        known = dict(zip(("customer", "merchant"), exact.read(keys, start), strict=True))
        for group in FRAUD_V1.groups:
            ts, values = raw[group.name]
            assert ts.replace(tzinfo=None) == start
            assert values == exact.features(group, known[group.entity.name], start)
    exact.clear()

    # c1's rows (pushed as of May) are gone; an update after the reset is served
    assert _read(reader, "c1", "m1")[CUSTOMER.name] == (None, None)
    consumer.add(_event("e1", start + timedelta(hours=1), customer="c1"))
    consumer.add(_event("tick-r", start + timedelta(hours=2), customer="tick", merchant="tick"))
    consumer.wait_for(applied=int(status["applied"]) + 1)
    ts, values = _read(reader, "c1", "m1")[CUSTOMER.name]
    assert ts.replace(tzinfo=None) == start + timedelta(hours=1, seconds=120) + US
    assert values["customer_tx_count_1h"] == 1


def test_a_deleted_stream_is_started_again_and_read(consumer):
    """The stream, its group and the status deleted under a running consumer (Redis flushed, or
    the keys cleared): the consumer creates the group again, writes its status and reads the
    entries added after."""
    consumer.client.delete(stream.STREAM)
    consumer.client.delete(stream.STATUS_KEY)
    consumer.wait_up(timeout=20)
    assert consumer.proc.poll() is None
    consumer.add(_event("after-delete", T + timedelta(days=2), customer="c6", merchant="m6"))
    assert int(consumer.wait_for(read=1)["read"]) == 1
    (group,) = consumer.client.xinfo_groups(stream.STREAM)
    assert group["pending"] == 0
