"""The label of a task declared by a predictive query, at its window's edges (models/query_tasks.py).

The generated SQL runs on a DuckDB holding just the tables it reads, with events placed on the
edges: [t + start, t + end) holds an event at t + start and one a microsecond before t + end, not
one at t + end or a microsecond before t + start; a row is kept when its window ends by the last
transaction, exactly at it included.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from models import query_tasks
from skewless import pql

T = datetime(2025, 3, 10)  # a training row's time (midnight)
US = timedelta(microseconds=1)


def _labels(
    target: str, events: list[tuple[str, datetime, float]], rows: list[tuple[str, datetime]]
):
    query = pql.parse(f"PREDICT {target} FOR EACH customers.customer_id", declare_new=True)
    con = duckdb.connect()
    con.execute(
        "create table stg_raw__transactions (customer_id varchar, event_timestamp timestamp,"
        " amount double)"
    )
    con.execute(
        "create table customer_daily_activity (customer_id varchar, event_timestamp timestamp,"
        " customer_daily_tx_count_90d bigint)"
    )
    con.executemany("insert into stg_raw__transactions values (?, ?, ?)", events)
    con.executemany("insert into customer_daily_activity values (?, ?, 1)", rows)
    sql = query_tasks.training_set_sql(query.task)
    out = con.execute(f"select customer_id, event_timestamp, label from ({sql}) order by 1, 2")
    return {(c, t): label for c, t, label in out.fetchall()}


def test_the_window_holds_its_start_and_not_its_end():
    target = "COUNT(transactions.*, 1, 2, days) = 1"
    start, end = T + timedelta(days=1), T + timedelta(days=2)
    events = [
        ("at_start", start, 1.0),
        ("before_end", end - US, 1.0),
        ("at_end", end, 1.0),
        ("before_start", start - US, 1.0),
        ("horizon", T + timedelta(days=5), 1.0),  # the last transaction: every row is kept
    ]
    rows = [(c, T) for c in ("at_start", "before_end", "at_end", "before_start", "none")]
    labels = _labels(target, events, rows)
    assert labels == {
        ("at_start", T): True,
        ("before_end", T): True,
        ("at_end", T): False,
        ("before_start", T): False,
        ("none", T): False,  # no transaction: a count of 0
    }


def test_a_row_is_kept_when_its_window_ends_by_the_last_transaction():
    target = "COUNT(transactions.*, 0, 7, days) = 0"
    last = T + timedelta(days=7)
    events = [("c", T - timedelta(days=1), 1.0), ("c", last, 1.0)]
    rows = [("c", T), ("c", T + US), ("c", T - timedelta(days=1))]
    labels = _labels(target, events, rows)
    # the window [T, T + 7 days) ends at the last transaction: kept; a microsecond later, not
    assert labels == {("c", T - timedelta(days=1)): False, ("c", T): True}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("SUM(transactions.amount, 0, 1, days) >= 30", {"a": True, "b": False, "none": False}),
        ("SUM(transactions.amount, 0, 1, days) < 5", {"a": False, "b": False, "none": True}),
        ("AVG(transactions.amount, 0, 1, days) > 9", {"a": True, "b": False, "none": False}),
        ("MIN(transactions.amount, 0, 1, days) <= 5", {"a": False, "b": True, "none": False}),
        ("MAX(transactions.amount, 0, 1, days) != 20", {"a": False, "b": True, "none": False}),
    ],
)
def test_of_no_transactions_a_sum_is_0_and_a_mean_has_no_value(target, expected):
    events = [
        ("a", T, 10.0),
        ("a", T + timedelta(hours=3), 20.0),
        ("b", T + timedelta(hours=1), 5.0),
        ("b", T + timedelta(days=1), 1000.0),  # after the window
        ("last", T + timedelta(days=3), 1.0),
    ]
    rows = [(c, T) for c in ("a", "b", "none")]
    labels = _labels(target, events, rows)
    assert labels == {(c, T): label for c, label in expected.items()}
