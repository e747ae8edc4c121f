"""Property test: the arrival-aware feature models (skewless/dbtgen_arrival.py) equal the Python
evaluator run, for each transaction, on the events of its entity that had arrived by then.

Exact mode serves a transaction from the events that arrived before it; the evaluator is what its
tiles are held equal to. So for each transaction row: the features over the events whose arrival
is not after the transaction's own (and, as always, whose event time is before its t); snapshot
rows as the feature model's. The events arrive late at random, past the hop and window edges.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import jinja2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skewless import dbtgen, dbtgen_arrival
from skewless.evaluate import evaluate
from tests.featurecheck import same
from tests.properties import examples
from tests.skewless.test_feature_equivalence import (
    BASE,
    _raw,
    _staged,
    event,
    render_model,
    staged_table,
)

GROUPS = dbtgen_arrival.groups()
# how late each event arrives: mostly on time, else by minutes to days, on hop edges and off them
delays = (
    st.sampled_from([timedelta(0)] * 3)
    | st.sampled_from(
        [
            timedelta(microseconds=1),
            timedelta(minutes=5),
            timedelta(hours=1),
            timedelta(hours=1, microseconds=1),
            timedelta(days=1),
            timedelta(days=8),
        ]
    )
    | st.integers(1, 60 * 24 * 3).map(lambda m: timedelta(minutes=m))
)


def _with_arrivals(raw: list[dict], late: list[timedelta]) -> list[dict]:
    events = _staged(raw)
    for e, delay in zip(events, late, strict=False):
        e["arrival_timestamp"] = e["event_timestamp"] + delay
    return events


def run_as_arrived(group, events: list[dict], cutoff) -> tuple[list[dict], list[dict]]:
    """The group's feature model (the offline truth) and its arrival-aware model over
    ``events`` (staged transactions), rendered as dbt-duckdb would and run on DuckDB."""
    con = staged_table(events)
    truth = render_model(group, cutoff)
    con.execute(f"create table truth as {truth}")
    sql = jinja2.Template(dbtgen_arrival.render_as_arrived(group)).render(
        ref=lambda name: "truth" if name == group.name else "stg", **dbtgen.engine_macros("duckdb")
    )
    return _rows(con, "select * from truth"), _rows(con, sql)


def _rows(con, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def arrival_mismatches(group, rows: list[dict], events: list[dict]) -> list[str]:
    key = group.entity.join_key
    by_entity, by_id = defaultdict(list), {e["transaction_id"]: e for e in events}
    for e in events:
        by_entity[e[key]].append(e)
    out = []
    for row in rows:
        at, scored = row["event_timestamp"], by_id.get(row["transaction_id"])
        seen = by_entity[row[key]]
        if scored is not None:  # a transaction: what had arrived when it was scored
            seen = [e for e in seen if e["arrival_timestamp"] <= scored["arrival_timestamp"]]
        for name, value in evaluate(group, seen, at).items():
            if not same(row[name], value):
                out.append(
                    f"{row['transaction_id']} t={at} {name}: sql={row[name]!r} python={value!r}"
                )
    return out


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
@settings(max_examples=examples(120))
@given(
    raw=st.lists(event, min_size=1, max_size=40),
    late=st.lists(delays, max_size=40),
    cutoff_day=st.integers(1, 45),
)
# An event that arrives after a later one of its customer and merchant (that one is scored
# without it), exactly when the later one arrives (counted: it came first), a microsecond after
# (not counted), and a day late, past the 1-hour hop and the 1-day window of the later ones.
@example(
    raw=[
        _raw("c1", "m1", timedelta(hours=1), is_fraud=1, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=2), is_fraud=0, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=3), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(hours=4), is_fraud=None, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(days=1, hours=2), is_fraud=None, label_delay=timedelta(0)),
    ],
    late=[
        timedelta(hours=3),
        timedelta(hours=2, microseconds=1),
        timedelta(0),
        timedelta(0),
        timedelta(0),
    ],  # fmt: skip
    cutoff_day=3,
)
# The same 8 days after a labelled event whose label is not known yet when the overtaken ones are
# scored (a fraud rate over [t - 14 d, t - 7 d) leaves it out until its label comes).
@example(
    raw=[
        _raw("c2", "m1", timedelta(hours=1), is_fraud=1, label_delay=timedelta(days=9)),
        _raw("c2", "m1", timedelta(hours=2), is_fraud=0, label_delay=timedelta(hours=1)),
        _raw("c1", "m1", timedelta(days=8, hours=1), is_fraud=1, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(days=8, hours=2), is_fraud=0, label_delay=timedelta(0)),
        _raw("c1", "m1", timedelta(days=8, hours=3), is_fraud=None, label_delay=timedelta(0)),
    ],
    late=[timedelta(0), timedelta(0), timedelta(hours=3), timedelta(0), timedelta(0)],
    cutoff_day=10,
)
def test_arrival_aware_sql_equals_python_over_the_arrived_events(group, raw, late, cutoff_day):
    events = _with_arrivals(raw, late)
    cutoff = BASE + timedelta(days=cutoff_day)
    _, rows = run_as_arrived(group, events, cutoff)
    assert arrival_mismatches(group, rows, events) == []
    assert sorted(r["transaction_id"] for r in rows if r["transaction_id"]) == sorted(
        e["transaction_id"] for e in events
    )
