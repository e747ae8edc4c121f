"""Property test: features from tiles (skewless.tiles) equal the evaluator's on the raw events.

Events arrive at their event time and labels at their label time, in time order; before each
event arrives, its features are read from the tiles, the raw head and labels, exactly what the
evaluator computes from every event and label known by then; and again half an hour earlier, as a
late request would read them. Tiles take updates with ``apply_updates``, the state's bulk load
(its script does the same in Redis).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skewless.evaluate import evaluate
from skewless.features import (
    CUSTOMER_TRANSACTION_WINDOWS,
    GROUPS,
    MERCHANT,
    Agg,
    Aggregate,
    FeatureGroup,
    Grain,
)
from skewless.tiles import Layout, apply_updates, micros, minute_of, newest_after
from tests.featurecheck import identical, same
from tests.properties import examples
from tests.skewless.test_feature_equivalence import _raw, _staged, event

# The declared transaction groups, and one with what they lack: a label rate over a window ending
# at t, and distinct customers of a merchant.
EXTRA = FeatureGroup(
    name="merchant_plain_windows",
    entity=MERCHANT,
    grain=Grain.TRANSACTION,
    windows=("1h", "1d"),
    aggregates=(
        Aggregate("plain_fraud_rate", Agg.LABELED_RATE, "is_fraud"),
        Aggregate("plain_customer_distinct", Agg.COUNT_DISTINCT, "customer_id"),
        Aggregate("plain_amount_avg", Agg.AVG, "amount"),
    ),
)
GROUPS_ONLINE = [g for g in GROUPS if g.grain is Grain.TRANSACTION] + [EXTRA]
# The feature test's events, a few seconds apart within a minute too: t's own minute is read raw.
within_minutes = event.flatmap(
    lambda e: st.sampled_from([0, 0, 1, 30, 59]).map(
        lambda s: {**e, "offset": e["offset"] + timedelta(seconds=s)}
    )
)


def _minute(at):
    return minute_of(micros(at))


def arrivals(events: list[dict]) -> list[tuple]:
    """(time, kind, index), kind 1 for an event and 0 or 2 for a label: events at their event
    time, labels at their label time, in time order; labels first on ties (a label known at t
    counts at t), but never before their own event has arrived (a label as old as its event)."""
    labels = [
        (e["label_timestamp"], 2 if e["label_timestamp"] == e["event_timestamp"] else 0, i)
        for i, e in enumerate(events)
        if e["is_fraud"] is not None
    ]
    return sorted([(e["event_timestamp"], 1, i) for i, e in enumerate(events)] + labels)


def known_at(arrived: list[dict], t) -> list[dict]:
    """The arrived events before ``t``, each with its label only if known by ``t``."""
    unknown = {"is_fraud": None, "label_timestamp": None}
    return [
        x if x["is_fraud"] is not None and x["label_timestamp"] <= t else {**x, **unknown}
        for x in arrived
        if x["event_timestamp"] < t
    ]


@pytest.mark.parametrize("group", GROUPS_ONLINE, ids=lambda g: g.name)
@settings(max_examples=examples(120))
@given(raw=st.lists(within_minutes, min_size=1, max_size=40))
# A late request (half an hour back) while the tile holding it already holds a labelled event after
# it: that event and its label are taken out of the tile.
@example(
    raw=[
        _raw("c1", "m1", timedelta(hours=9, minutes=50), is_fraud=1, label_delay=timedelta(0)),
        _raw("c2", "m1", timedelta(hours=10, minutes=10), is_fraud=0, label_delay=timedelta(0)),
    ]
)
# A label that comes 30 days after its event, just as the next event arrives: half an hour earlier
# it was not known yet, so the late request must take it back out of the tiles.
@example(
    raw=[
        _raw("c1", "m1", timedelta(0), is_fraud=1, label_delay=timedelta(days=30)),
        _raw("c2", "m1", timedelta(days=2), is_fraud=0, label_delay=timedelta(days=1)),
        _raw("c1", "m1", timedelta(days=30), is_fraud=None, label_delay=timedelta(0)),
    ]
)
# A late request after the entity's two newest events, whose last event before it is in an earlier
# minute kept raw (the day's tile holding t also holds the newer ones), or older than the
# lateness: the newest minute before the lateness stays raw for it.
@example(
    raw=[
        _raw("c1", "m1", timedelta(hours=1), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=2), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=2, minutes=40), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=2, minutes=45), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=3, minutes=10), is_fraud=None, label_delay=timedelta(0)),
    ]
)
@example(
    raw=[
        _raw("c1", "m1", timedelta(hours=1), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=1, minutes=30), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=2, minutes=40), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=2, minutes=45), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=3, minutes=10), is_fraud=None, label_delay=timedelta(0)),
    ]
)
def test_tiles_equal_the_evaluator(group, raw):
    layout = Layout([group], lateness=timedelta(hours=1))
    events = _staged(raw)
    key = group.entity.join_key
    timeline = arrivals(events)
    state: dict[str, dict] = {}  # entity -> tiles, raw events, raw labels, newest
    arrived: list[dict] = []
    for at, kind, i in timeline:
        e = events[i]
        entity = state.setdefault(
            e[key], {"tiles": {}, "raw": [], "labels": [], "newest": (None, None)}
        )
        if kind != 1:
            apply_updates(entity["tiles"], layout.label_updates(e))
            entity["labels"].append(e)
            for raw_event in entity["raw"]:
                if raw_event["transaction_id"] == e["transaction_id"]:
                    raw_event.update(is_fraud=e["is_fraud"], label_timestamp=e["label_timestamp"])
            continue
        # now, and half an hour ago (a late request: what arrived since must not count)
        for t in (at, at - timedelta(minutes=30)):
            known = known_at([x for x in arrived if x[key] == e[key]], t)
            minute = t - (t - t.min) % timedelta(minutes=1)
            earlier = [x for x in entity["raw"] if x["event_timestamp"] < minute]
            last_minute = max((_minute(x["event_timestamp"]) for x in earlier), default=None)
            got = layout.evaluate(
                group,
                t,
                {name: entity["tiles"].get(name) for name in layout.fields_at(t)},
                [x for x in entity["raw"] if x["event_timestamp"] >= minute],
                [x for x in entity["labels"] if x["label_timestamp"] >= minute],
                entity["newest"],
                [x for x in earlier if _minute(x["event_timestamp"]) == last_minute],
            )
            expected = evaluate(group, known, t)
            wrong = {n: (got[n], v) for n, v in expected.items() if not same(got[n], v)}
            assert wrong == {}, (e["transaction_id"], t)
        arrived.append(e)
        arriving = {**e, "is_fraud": None, "label_timestamp": None}
        apply_updates(entity["tiles"], layout.event_updates(arriving))
        entity["raw"].append(arriving)
        entity["newest"] = newest_after(entity["newest"], at)
        cutoff = layout.raw_cutoff(entity["newest"][0])
        # raw: the events of the lateness, and of the newest minute before it (as the state keeps)
        older = [minute_of(micros(x["event_timestamp"])) for x in entity["raw"]]
        keep = max((m for m in older if m < cutoff), default=cutoff)
        entity["raw"] = [x for x, m in zip(entity["raw"], older, strict=True) if m >= keep]
        entity["labels"] = [x for x in entity["labels"] if micros(x["label_timestamp"]) >= cutoff]


def test_an_emptied_window_sums_to_exactly_zero():
    """The day before's tile holds 0.1 + 0.2; a 1-day window at 05:42 the next day takes both out
    with the hour tiles before 05:00: the sum is 0.0, not the rounding residue 2.8e-17 (the
    offline truth is 0 and the skew report would call the difference a logic mismatch)."""
    group = CUSTOMER_TRANSACTION_WINDOWS
    layout = Layout([group], lateness=timedelta(hours=1))
    events = _staged(
        [
            _raw(
                "c1", "m1", timedelta(hours=2), is_fraud=None, label_delay=timedelta(0), amount=0.1
            ),
            _raw(
                "c1", "m2", timedelta(hours=3), is_fraud=None, label_delay=timedelta(0), amount=0.2
            ),
        ]
    )
    tiles: dict = {}
    for e in events:
        apply_updates(tiles, layout.event_updates(e))
    t = events[0]["event_timestamp"] + timedelta(days=1, hours=3, minutes=42, seconds=42)
    got = layout.evaluate(group, t, {n: tiles.get(n) for n in layout.fields_at(t)}, [], [])
    assert identical(got["customer_amount_sum_1d"], 0.0)
    assert got["customer_amount_avg_1d"] is None
    assert same(got["customer_amount_sum_7d"], 0.3)
