"""Predictive queries: the parser and its resolution against the declaration (skewless/pql.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skewless import pql
from tests.properties import examples


@pytest.mark.parametrize(
    ("text", "task", "table", "ids"),
    [
        # the article's two queries (its transactions key is ours: transaction_id)
        ("PREDICT churn_30d FOR EACH customers.customer_id", "churn_30d", "customers", None),
        (
            "PREDICT fraud_probability FOR transactions.transaction_id = 'T-90042'",
            "fraud",
            "transactions",
            ("T-90042",),
        ),
        # the churn target written as its label
        (
            "PREDICT COUNT(transactions.*, 0, 30, days) = 0 FOR EACH customers.customer_id",
            "churn_30d",
            "customers",
            None,
        ),
        (
            "predict churn for customers.customer_id in ('a', 'b''c')",
            "churn_30d",
            "customers",
            ("a", "b'c"),
        ),  # fmt: skip
        (
            "PREDICT transactions.is_fraud FOR EACH transactions.transaction_id",
            "fraud",
            "transactions",
            None,
        ),  # fmt: skip
        (
            "PREDICT is_churned_30d FOR customers.customer_id = 42",
            "churn_30d",
            "customers",
            ("42",),
        ),  # fmt: skip
    ],
)
def test_the_forms_resolve_to_the_declared_tasks(text, task, table, ids):
    query = pql.parse(text)
    assert (query.task.name, query.table.name, query.ids) == (task, table, ids)
    assert query.batch == (ids is None)


def test_where_holds_past_window_aggregations_and_ids():
    query = pql.parse(
        "PREDICT churn FOR EACH customers.customer_id WHERE COUNT(transactions.*, -30, 0, days) > 0"
        " AND SUM(transactions.amount, -24, 0, hours) >= 100.5"
        " AND customers.customer_id IN ('c1', 'c2')"
    )
    count, total, ids = query.where
    assert count == pql.Condition(
        ">", 0, pql.Aggregation("COUNT", "transactions", None, timedelta(days=-30), timedelta(0))
    )
    assert total.aggregation.column == "amount" and total.aggregation.start == timedelta(hours=-24)
    assert (total.op, total.value) == (">=", 100.5)
    assert ids == pql.Condition("in", ("c1", "c2"))


def _error(text: str) -> str:
    with pytest.raises(pql.QueryError) as info:
        pql.parse(text)
    return str(info.value)


def _caret_under(message: str) -> str:
    """The text of the query from the caret on."""
    _, query, caret = message.split("\n")
    return query[caret.index("^") :]


@pytest.mark.parametrize(
    ("text", "says", "at"),
    [
        (
            "PREDICT churn FOR EACH users.user_id",
            "unknown table 'users'; tables: transactions, customers, merchants",
            "users.user_id",
        ),  # fmt: skip
        (
            "PREDICT fraud FOR transactions.txn_id = 'T-1'",
            "unknown column transactions.txn_id; columns: transaction_id,",
            "txn_id",
        ),  # fmt: skip
        (
            "PREDICT churn_7d FOR EACH customers.customer_id",
            "unknown target 'churn_7d'; targets: fraud, fraud_probability, is_fraud, churn_30d",
            "churn_7d",
        ),  # fmt: skip
        (
            "PREDICT COUNT(transactions.*, 0, 7, days) = 0 FOR EACH customers.customer_id",
            "no declared task predicts COUNT(transactions.*, 0, 7, days) = 0 for customers;"
            " declared targets: churn_30d: COUNT(transactions.*, 0, 30, days) = 0",
            "COUNT",
        ),  # fmt: skip
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE MEDIAN(transactions.amount, -7, 0)"
            " > 1",
            "unknown aggregation 'MEDIAN'; aggregations: COUNT, SUM, AVG, MIN, MAX",
            "MEDIAN",
        ),  # fmt: skip
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE COUNT(transactions.*, -7, 0, weeks)"
            " > 1",
            "unknown unit 'weeks'; units: days, hours, minutes",
            "weeks",
        ),  # fmt: skip
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE AVG(transactions.merchant_id, -7, 0)"
            " > 1",
            "AVG needs a numeric column of transactions (amount)",
            "merchant_id",
        ),  # fmt: skip
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE COUNT(transactions.*, -7, 1) > 1",
            "a filter looks at the past",
            "COUNT",
        ),  # fmt: skip
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE COUNT(transactions.*, 0, -7) > 1",
            "a window ends after it starts: (0, -7)",
            "0, -7",
        ),  # fmt: skip
        (
            "PREDICT fraud FOR EACH customers.customer_id",
            "fraud predicts per row of transactions, not customers",
            "fraud",
        ),  # fmt: skip
        (
            "PREDICT churn FOR customers.customer_id = 'c1' WHERE COUNT(transactions.*, -7, 0) > 1",
            "WHERE filters FOR EACH queries only",
            "WHERE",
        ),  # fmt: skip
        (
            "PREDICT churn FOR customers.merchant_id = 'c1'",
            "unknown column customers.merchant_id",
            "merchant_id",
        ),  # fmt: skip
        (
            "PREDICT churn FOR customers.customer_id",
            "expected = '<id>' or IN ('<id>', ...), got the end of the query",
            "",
        ),  # fmt: skip
        ("PREDICT churn EACH customers.customer_id", "expected FOR, got 'EACH'", "EACH"),
        ("PREDICT churn FOR EACH customers.customer_id LIMIT 5", "unexpected 'LIMIT'", "LIMIT"),
        ("PREDICT churn FOR customers.customer_id = c1", "expected an id in quotes", "c1"),
        ("PREDICT churn FOR EACH customers.customer_id;", "unexpected character ';'", ";"),
        ("PREDICT nope.churn FOR EACH customers.customer_id", "unknown table 'nope'", "nope"),
        (
            "PREDICT customers.is_fraud FOR EACH transactions.transaction_id",
            "is_fraud is predicted per row of transactions, not customers",
            "customers.is_fraud",
        ),  # fmt: skip
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE merchants.merchant_id = 'x'",
            "WHERE compares customers.customer_id or aggregations only",
            "merchants",
        ),  # fmt: skip
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE COUNT(transactions.*, -10, 30,"
            " minutes) > 1",
            "COUNT(transactions.*, -10, 30, minutes) ends after t",
            "COUNT",
        ),  # fmt: skip
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE COUNT(transactions.*, 0,"
            " 99999999999) > 1",
            "a window reaches at most 3650 days from t",
            "0, 99",
        ),  # fmt: skip
        ("PREDICT churn FOR customers.customer_id IN ('c1', '')", "an empty id", "''"),
    ],
)
def test_errors_name_the_problem_and_point_at_the_token(text, says, at):
    message = _error(text)
    assert says in message
    assert _caret_under(message).startswith(at)


def test_a_query_on_several_lines_shows_the_line_at_fault():
    message = _error(
        "PREDICT churn\nFOR EACH customers.customer_id\nWHERE COUNT(transactions.*, -7, 0) >> 1"
    )
    assert message.startswith("expected a value (a number), got '>' at line 3, column 37")
    assert _caret_under(message) == "> 1"


def test_an_empty_query_says_what_one_looks_like():
    assert "PREDICT <target> FOR [EACH] <table>.<key>" in _error("   ")


ids = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12
)


@settings(max_examples=examples(100))
@given(
    given_ids=st.lists(ids, min_size=1, max_size=4),
    start=st.integers(-400, -1),
    length=st.integers(1, 400),
    unit=st.sampled_from(sorted(pql.UNITS)),
)
@example(given_ids=["it's", "'", "''"], start=-1, length=1, unit="minutes")
@example(given_ids=["a", "b", "a"], start=-400, length=400, unit="days")
def test_ids_and_windows_come_back_as_written(given_ids, start, length, unit):
    quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in given_ids)
    end = min(start + length, 0)
    if end <= start:
        return
    query = pql.parse(
        f"PREDICT churn FOR EACH customers.customer_id WHERE customers.customer_id IN ({quoted})"
        f" AND COUNT(transactions.*, {start}, {end}, {unit}) >= 1"
    )
    key, count = query.where
    assert key.value == tuple(given_ids)
    assert count.aggregation.start == start * pql.UNITS[unit]
    assert count.aggregation.end == end * pql.UNITS[unit]
    single = pql.parse(f"PREDICT churn FOR customers.customer_id IN ({quoted})")
    assert single.ids == tuple(dict.fromkeys(given_ids))  # a repeated id counts once
