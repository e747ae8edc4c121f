"""Predictive queries: the parser and its resolution against the declaration (skewless/pql.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skewless import pql
from skewless.tasks import TASKS
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
            "no task predicts COUNT(transactions.*, 0, 7, days) = 0 for customers;"
            " targets: churn_30d: COUNT(transactions.*, 0, 30, days) = 0 (--train declares",
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
        (
            "PREDICT churn FOR EACH customers.customer_id WHERE COUNT(transactions.*, -1.5, 0,"
            " minutes) > 1",
            "a window's bounds are whole minutes: (-1.5, 0)",
            "-1.5",
        ),  # fmt: skip
    ],
)
def test_errors_name_the_problem_and_point_at_the_token(text, says, at):
    message = _error(text)
    assert says in message
    assert _caret_under(message).startswith(at)


NEW_TARGET = "SUM(transactions.amount, 0, 36, hours) >= 99.5"


def test_a_new_target_declares_a_batch_task_of_the_entity():
    text = f"PREDICT {NEW_TARGET} FOR EACH customers.customer_id"
    query = pql.parse(text, declare_new=True)
    task, churn = query.task, TASKS["churn_30d"]
    assert query.new and str(query.target) == NEW_TARGET == task.query
    assert task.name == "pq_sum_amount_0_36h_ge_99p5" == pql.task_name(query.target)
    assert (task.based_on, task.service, task.active_within, task.ids) == (
        "churn_30d",
        churn.service,
        churn.active_within,
        churn.ids,
    )
    assert task.label_horizon == timedelta(hours=36)  # known once its window has ended
    assert task.training_set == f"query_tasks.{task.name}_training_set"
    assert task.predictions_table == f"predictions.{task.name}_scores"
    # written again: the same task; found later among the known tasks, by target or by name
    assert pql.parse(text, declare_new=True).task == task
    again = pql.parse(text, known=(task,))
    assert again.task == task and not again.new
    by_name = pql.parse(f"PREDICT {task.name} FOR customers.customer_id = 'c1'", known=(task,))
    assert by_name.task == task and by_name.ids == ("c1",)
    # its generic score and label columns name no target
    for column in (task.score_column, task.label):
        with pytest.raises(pql.QueryError, match=f"unknown target '{column}'"):
            pql.parse(f"PREDICT {column} FOR EACH customers.customer_id", known=(task,))
    # a declared task's target stays the declared task's
    churn_text = "PREDICT COUNT(transactions.*, 0, 30, days) = 0 FOR EACH customers.customer_id"
    assert pql.parse(churn_text, declare_new=True).task is churn


@pytest.mark.parametrize(
    ("target", "table", "says"),
    [
        ("COUNT(transactions.*, -1, 7, days) = 0", "customers.customer_id", "a target looks ahead"),
        (
            "COUNT(transactions.*, 0, 7, days) = 0",
            "transactions.transaction_id",
            "predicted per entity, not per row of transactions",
        ),  # fmt: skip
        (
            "COUNT(transactions.*, 0, 7, days) = 0",
            "merchants.merchant_id",
            "no declared batch task of merchants",
        ),  # fmt: skip
    ],
)
def test_a_target_that_cannot_be_a_label_is_an_error(target, table, says):
    with pytest.raises(pql.QueryError, match=says) as info:
        pql.parse(f"PREDICT {target} FOR EACH {table}", declare_new=True)
    assert _caret_under(str(info.value)).startswith(target.split("(")[0])


@settings(max_examples=examples(100))
@given(
    targets=st.lists(
        st.tuples(
            st.sampled_from(
                ["COUNT(transactions.*", "SUM(transactions.amount", "MIN(transactions.amount"]
            ),
            st.integers(0, 90),
            st.integers(1, 90),
            st.sampled_from(sorted(pql.UNITS)),
            st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
            st.decimals(-10_000_000, 10_000_000, places=2, allow_nan=False),
        ),
        min_size=2,
        max_size=2,
        unique=True,
    )
)
@example(
    targets=[
        ("COUNT(transactions.*", 0, 1, "days", "=", 0),
        ("COUNT(transactions.*", 0, 24, "hours", "=", 0),
    ]
)
@example(
    targets=[
        ("SUM(transactions.amount", 0, 1, "days", ">", 12345.67),
        ("SUM(transactions.amount", 0, 1, "days", ">", 12345.68),
    ]
)
@example(
    targets=[
        ("SUM(transactions.amount", 0, 1, "days", ">", -1),
        ("SUM(transactions.amount", 0, 1, "days", ">", 1),
    ]
)
@example(
    targets=[
        ("SUM(transactions.amount", 0, 1, "days", ">", 10_000_000),
        ("SUM(transactions.amount", 0, 1, "days", ">", 0.01),
    ]
)
def test_distinct_targets_declare_distinct_tasks(targets):
    """A task's name is its target's: the same target (however written) the same name, two
    targets two names, each a plain identifier (an MLflow model and a warehouse table)."""
    declared = []
    for function, start, length, unit, op, value in targets:
        text = f"PREDICT {function}, {start}, {start + length}, {unit}) {op} {value}"
        declared.append(pql.parse(f"{text} FOR EACH customers.customer_id", declare_new=True).task)
    first, second = declared
    for task in declared:  # a target written back parses to the same task (the registry's tag)
        again = pql.parse(f"PREDICT {task.query} FOR EACH customers.customer_id", declare_new=True)
        assert again.task == task
    assert re.fullmatch(r"pq_[a-z0-9_]+", first.name) and re.fullmatch(
        r"pq_[a-z0-9_]+", second.name
    )
    assert (first.name == second.name) == (first.query == second.query)


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
