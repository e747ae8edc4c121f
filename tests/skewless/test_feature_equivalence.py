"""Property test: the dbt SQL generated from the declaration equals the Python evaluator.

The generated model text is rendered with a minimal Jinja context (ref -> a table, the cutoff -> a
literal, the cross-engine macros -> their DuckDB variants) and run on an in-memory DuckDB, so
hypothesis can try hundreds of random event streams.
tests/dbt/test_feature_pipeline.py runs the same comparison through a real `dbt build`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import jinja2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skewless import dbtgen
from skewless.features import GROUPS, Grain
from tests.featurecheck import mismatches
from tests.properties import examples

BASE = datetime(2025, 1, 1)
# Offsets on a coarse grid make ties and events exactly on a hop (5 minutes, an hour, a day) or one
# window before another common; microsecond nudges probe those edges from both sides.
offsets = st.one_of(
    st.integers(0, 12).map(lambda h: timedelta(hours=h)),  # dense: many ties and exact edges
    st.integers(0, 40 * 24).map(lambda h: timedelta(hours=h)),
    st.integers(0, 40 * 24).map(lambda h: timedelta(hours=h, microseconds=1)),
    st.integers(1, 40 * 24).map(lambda h: timedelta(hours=h, microseconds=-1)),
    st.integers(0, 40 * 24 * 60).map(lambda m: timedelta(minutes=m)),
    st.integers(1, 40 * 24 * 12).map(lambda m: timedelta(minutes=5 * m, microseconds=-1)),
)
label_delays = st.sampled_from(
    [
        timedelta(0),
        timedelta(hours=1),
        timedelta(days=1),
        timedelta(days=7),
        timedelta(days=30),
        timedelta(days=30, microseconds=1),
    ]
) | st.integers(0, 12).map(lambda h: timedelta(hours=h))

event = st.fixed_dictionaries(
    {
        "customer_id": st.sampled_from(["c1", "c2", "c3"]),
        "merchant_id": st.sampled_from(["m1", "m2", "m3", "m4"]),
        "offset": offsets,
        "amount": st.integers(0, 100_000).map(lambda cents: cents / 100),
        "is_fraud": st.sampled_from([0, 0, 1, None]),
        "label_delay": label_delays,
    }
)


def _raw(customer_id, merchant_id, offset, *, is_fraud, label_delay, amount=10.0) -> dict:
    return {
        "customer_id": customer_id,
        "merchant_id": merchant_id,
        "offset": offset,
        "amount": amount,
        "is_fraud": is_fraud,
        "label_delay": label_delay,
    }


def _staged(raw: list[dict]) -> list[dict]:
    return [
        {
            "transaction_id": f"t{i}",
            "customer_id": e["customer_id"],
            "merchant_id": e["merchant_id"],
            "event_timestamp": BASE + e["offset"],
            "amount": e["amount"],
            "is_fraud": e["is_fraud"],
            "arrival_timestamp": BASE + e["offset"],
            "label_timestamp": BASE + e["offset"] + e["label_delay"],
        }
        for i, e in enumerate(raw)
    ]


def staged_table(events: list[dict]):
    """An in-memory DuckDB holding ``events`` (``_staged``) as the table ``stg``."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(
        "create table stg (transaction_id varchar, customer_id varchar, merchant_id varchar, "
        "event_timestamp timestamp, amount double, is_fraud tinyint, arrival_timestamp timestamp, "
        "label_timestamp timestamp)"
    )
    con.executemany(
        "insert into stg values (?, ?, ?, ?, ?, ?, ?, ?)", [list(e.values()) for e in events]
    )
    return con


def render_model(group, cutoff: datetime) -> str:
    """The group's dbt model as dbt-duckdb renders it, reading ``stg``."""
    return jinja2.Template(dbtgen.render_group(group)).render(
        ref=lambda name: "stg",
        features_as_of=lambda: f"timestamp '{cutoff.isoformat(' ')}'",
        **dbtgen.engine_macros("duckdb"),  # the cross-engine macros as dbt-duckdb renders them
    )


def run_model(group, events: list[dict], cutoff: datetime) -> list[dict]:
    con = staged_table(events)
    cursor = con.execute(render_model(group, cutoff))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
@settings(max_examples=examples(120))
@given(raw=st.lists(event, min_size=1, max_size=40), cutoff_day=st.integers(1, 45))
# The window edges, always tried: an event exactly one day before another (in: the tail is aligned
# to the hop), a tie (out), a label that becomes known exactly at t (used) and one an hour later
# (not used).
@example(
    raw=[
        _raw("c1", "m1", timedelta(0), is_fraud=1, label_delay=timedelta(hours=2)),
        _raw("c1", "m1", timedelta(hours=2), is_fraud=0, label_delay=timedelta(hours=3)),
        _raw("c1", "m1", timedelta(hours=2), is_fraud=1, label_delay=timedelta(0)),
        _raw("c1", "m2", timedelta(days=1, hours=2), is_fraud=0, label_delay=timedelta(0)),
    ],
    cutoff_day=2,
)
# The label-delay shift of fraud risk windows ([floor(t - 7d - w, h), floor(t - 7d, h))): a
# labelled event exactly 7 days before t (out), and in once the next hop starts; its label known a
# microsecond after t (not used), then exactly at t (used); a label that arrives 20 days late counts
# once known.
@example(
    raw=[
        _raw("c1", "m1", timedelta(0), is_fraud=1, label_delay=timedelta(days=7, microseconds=2)),
        _raw("c2", "m1", timedelta(days=7), is_fraud=None, label_delay=timedelta(0)),
        _raw("c2", "m1", timedelta(days=7, microseconds=1), is_fraud=0, label_delay=timedelta(0)),
        _raw("c3", "m1", timedelta(days=7, microseconds=2), is_fraud=0, label_delay=timedelta(0)),
        _raw("c1", "m2", timedelta(days=1), is_fraud=1, label_delay=timedelta(days=20)),
        _raw("c2", "m2", timedelta(days=10), is_fraud=0, label_delay=timedelta(days=7)),
        _raw("c3", "m2", timedelta(days=20), is_fraud=None, label_delay=timedelta(0)),
        _raw("c3", "m2", timedelta(days=22), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m3", timedelta(0), is_fraud=1, label_delay=timedelta(days=1)),
        _raw("c2", "m3", timedelta(days=7), is_fraud=None, label_delay=timedelta(0)),
    ],
    cutoff_day=25,
)
# Windows over label time ([floor(t - w, h), t] by label time, of events before t labelled at most
# 30 days after them): a label known exactly w before t (in) and a microsecond earlier (in: the
# tail is aligned to the hop); labels 29 and 30 days after their event (in) and 30 days and a
# microsecond after (never).
@example(
    raw=[
        _raw("c1", "m4", timedelta(0), is_fraud=1, label_delay=timedelta(days=2)),
        _raw("c2", "m4", timedelta(days=3), is_fraud=None, label_delay=timedelta(0)),
        _raw(
            "c2", "m4", timedelta(days=3, microseconds=1), is_fraud=None, label_delay=timedelta(0)
        ),
        _raw("c3", "m1", timedelta(0), is_fraud=0, label_delay=timedelta(days=29)),
        _raw("c1", "m1", timedelta(0), is_fraud=1, label_delay=timedelta(days=30)),
        _raw("c2", "m1", timedelta(0), is_fraud=1, label_delay=timedelta(days=30, microseconds=1)),
        _raw("c3", "m1", timedelta(days=30), is_fraud=None, label_delay=timedelta(0)),
        _raw(
            "c3", "m1", timedelta(days=30, microseconds=1), is_fraud=None, label_delay=timedelta(0)
        ),
    ],
    cutoff_day=31,
)
def test_sql_equals_python(group, raw, cutoff_day):
    events = _staged(raw)
    cutoff = BASE + timedelta(days=cutoff_day)
    rows = run_model(group, events, cutoff)
    assert mismatches(group, rows, events) == []

    key = group.entity.join_key
    seen = {e[key] for e in events if e["event_timestamp"] < cutoff}
    if group.grain is Grain.TRANSACTION:
        # one row per event plus one snapshot row per entity with history before the cutoff
        assert sorted(r["transaction_id"] for r in rows if r["transaction_id"]) == sorted(
            e["transaction_id"] for e in events
        )
        snapshots = [r for r in rows if r["is_snapshot"]]
        assert sorted(r[key] for r in snapshots) == sorted(seen)
        assert all(r["event_timestamp"] == cutoff for r in snapshots)
    else:
        # one row per entity and midnight, from the day after its first event to the cutoff
        for entity in seen:
            first = min(e["event_timestamp"] for e in events if e[key] == entity)
            days = (cutoff - datetime.combine(first.date(), datetime.min.time())).days
            assert sum(1 for r in rows if r[key] == entity) == days
