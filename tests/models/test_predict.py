"""Predictive queries on the pipeline: FOR EACH is batch scoring, FOR <key> = looks up or scores.

The realtime form (a transaction scored through the sidecar) is in tests/serving/test_predict.py.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from models import batch_score, query_tasks, training
from skewless import pql, predict, settings, warehouse
from skewless.tasks import TASKS

pytestmark = pytest.mark.slow

DAY = date(2025, 4, 14)  # the last day of the shared pipeline
CHURN = TASKS["churn_30d"]


def _partition(day: date, table: str = CHURN.predictions_table):
    """The day's rows of a customer task's predictions table, by customer."""
    con = warehouse.connect(settings.load().warehouse_path, read_only=True)
    try:
        return con.execute(
            f"select * from {table} where score_date = ? order by customer_id", [day]
        ).fetchdf()
    finally:
        con.close()


def _train_churn() -> dict:
    with pytest.warns(UserWarning, match="gap"):  # 45 days: explicit windows, no 30-day gap
        return training.train(
            "churn",
            train_start=datetime(2025, 3, 1),
            train_end=datetime(2025, 3, 9),
            test_start=datetime(2025, 3, 9),
            test_end=datetime(2025, 3, 16),
        )


def test_for_each_is_the_batch_score_dags_day_and_where_filters_it(pipeline_copy, redis_db):
    import redis

    client = redis.Redis.from_url(redis_db, decode_responses=True)
    client.flushdb()
    _train_churn()
    cfg = settings.load()
    batch_score.score("churn_30d", DAY, redis_url=redis_db)  # what the batch_score DAG runs
    scored = _partition(DAY)

    query = pql.parse("PREDICT churn_30d FOR EACH customers.customer_id")
    result = predict.run(query, cfg, day=DAY, redis_url=redis_db)
    assert result.path == "batch" and result.summary["rows"] == len(scored) > 0
    assert result.rows.reset_index(drop=True).equals(scored)  # the same rows and numbers
    assert _partition(DAY).equals(scored)  # the partition rewritten, unchanged

    # WHERE: customers with a transaction in the 7 days before the prediction time (the midnight
    # after DAY) and more than 50 spent in them, counted here from the staged transactions
    at = datetime.combine(DAY, datetime.min.time()) + timedelta(days=1)
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        spent = con.execute(
            "select customer_id, count(*) as n, sum(amount) as total from stg_raw__transactions"
            " where event_timestamp >= ? and event_timestamp < ? group by customer_id",
            [at - timedelta(days=7), at],
        ).fetchdf()
    finally:
        con.close()
    expected = set(spent[(spent["n"] > 0) & (spent["total"] > 50)]["customer_id"])
    assert 0 < len(expected) < len(scored)
    filtered = predict.run(
        pql.parse(
            "PREDICT COUNT(transactions.*, 0, 30, days) = 0 FOR EACH customers.customer_id"
            " WHERE COUNT(transactions.*, -7, 0, days) > 0 AND SUM(transactions.amount, -7, 0) > 50"
        ),
        cfg,
        day=DAY,
        redis_url=redis_db,
    )
    assert set(filtered.rows["customer_id"]) == expected
    by_id = scored.set_index("customer_id")["churn_probability"]
    got = filtered.rows.set_index("customer_id")["churn_probability"]
    assert got.to_dict() == by_id[got.index].to_dict()

    # an entity without transactions in the window sums 0, as the declared windows do
    quiet = predict.run(
        pql.parse(
            "PREDICT churn FOR EACH customers.customer_id WHERE SUM(transactions.amount, -7, 0) < 1"
        ),
        cfg,
        day=DAY,
        redis_url=redis_db,
    )
    spent_little = set(spent[spent["total"] < 1]["customer_id"])
    idle = set(scored["customer_id"]) - set(spent["customer_id"])
    assert idle and set(quiet.rows["customer_id"]) == idle | spent_little

    # FOR <key> IN (...): the nightly scores by key lookup, as the sidecar's GET route reads them
    some = list(scored["customer_id"][:3])
    quoted = ", ".join(f"'{i}'" for i in some)
    looked_up = predict.run(
        pql.parse(f"PREDICT churn FOR customers.customer_id IN ({quoted})"), cfg, redis_url=redis_db
    )
    assert looked_up.path == "lookup"
    assert list(looked_up.rows["customer_id"]) == some
    assert list(looked_up.rows["churn_probability"]) == list(by_id[some])
    assert set(looked_up.rows["score_date"]) == {DAY.isoformat()}

    with pytest.raises(predict.PredictError, match="no churn_30d score for customer 'nobody'"):
        predict.run(
            pql.parse("PREDICT churn FOR customers.customer_id = 'nobody'"), cfg, redis_url=redis_db
        )
    client.flushdb()


def test_for_each_transaction_scores_the_day_like_batch_scoring(pipeline_copy):
    training.train("fraud")
    cfg = settings.load()
    result = predict.run(
        pql.parse("PREDICT fraud FOR EACH transactions.transaction_id"), cfg, day=DAY
    )
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        table = con.execute(
            f"select * from {TASKS['fraud'].predictions_table} where score_date = ?"
            " order by transaction_id",
            [DAY],
        ).fetchdf()
    finally:
        con.close()
    assert result.summary["rows"] == len(table) == len(result.rows) > 0
    assert result.rows.reset_index(drop=True).equals(table)


def _labels_by_hand(con, rows, function: str, column: str | None, start, end, op, value):
    """The label of each (customer_id, event_timestamp) of ``rows`` from the staged
    transactions, counted here in pandas: ``function`` over [t + start, t + end)."""
    import operator

    events = con.execute(
        "select customer_id, event_timestamp, amount from stg_raw__transactions"
    ).fetchdf()
    pairs = rows[["customer_id", "event_timestamp"]].merge(
        events, on="customer_id", how="left", suffixes=("", "_event")
    )
    inside = (pairs["event_timestamp_event"] >= pairs["event_timestamp"] + start) & (
        pairs["event_timestamp_event"] < pairs["event_timestamp"] + end
    )
    values = pd.Series(1.0, index=pairs.index) if column is None else pairs[column]
    pairs["v"] = values.where(inside)
    how = {"COUNT": "count", "SUM": "sum", "AVG": "mean", "MIN": "min", "MAX": "max"}[function]
    measured = pairs.groupby(["customer_id", "event_timestamp"])["v"].agg(how)
    compare = {"=": operator.eq, ">": operator.gt, "<=": operator.le}[op]
    if function in ("COUNT", "SUM"):  # of nothing: 0
        labels = compare(measured.fillna(0), value)
    else:  # of nothing: no value, the label is false
        labels = compare(measured, value) & measured.notna()
    keys = pd.MultiIndex.from_frame(rows[["customer_id", "event_timestamp"]])
    return labels.reindex(keys).to_numpy()


@pytest.mark.parametrize(
    "target",
    [
        "SUM(transactions.amount, 0, 7, days) > 150",
        "COUNT(transactions.*, 12, 60, hours) = 0",
        "AVG(transactions.amount, 1, 3, days) > 40",
        "MIN(transactions.amount, 0, 2, days) <= 10",
    ],
)
def test_a_new_targets_labels_are_its_aggregation_after_each_row(built_pipeline, target):
    """The training set of a task declared by a query: the declared batch task's rows of active
    entities whose target window ends within the data, each labelled with the target counted
    here from the transactions themselves."""
    query = pql.parse(f"PREDICT {target} FOR EACH customers.customer_id", declare_new=True)
    task, agg = query.task, query.target.aggregation
    con = warehouse.connect(built_pipeline.var_dir / "warehouse.duckdb", read_only=True)
    try:
        built = con.execute(f"{query_tasks.training_set_sql(task)} order by 1, 2").fetchdf()
        (last,) = con.execute("select max(event_timestamp) from stg_raw__transactions").fetchone()
        daily = con.execute(
            "select customer_id, event_timestamp from customer_daily_activity"
            " where customer_daily_tx_count_90d > 0 and event_timestamp + ? <= ? order by 1, 2",
            [agg.end, last],
        ).fetchdf()
        expected = _labels_by_hand(
            con,
            built,
            agg.function,
            agg.column,
            agg.start,
            agg.end,
            query.target.op,
            query.target.value,
        )
    finally:
        con.close()
    assert built[["customer_id", "event_timestamp"]].equals(daily)
    assert 0 < built["label"].sum() < len(built)  # both classes: the target means something
    assert list(built["label"]) == list(expected)


def test_the_churn_target_written_as_a_new_task_labels_as_churn_30d(built_pipeline):
    query = pql.parse(f"PREDICT {pql._label_of(CHURN)} FOR EACH customers.customer_id")
    assert query.task is CHURN  # declared: the query resolves to it; declared again here
    task = pql.declare_task(query.target, query.table)
    con = warehouse.connect(built_pipeline.var_dir / "warehouse.duckdb", read_only=True)
    try:
        for one, other in (
            (
                f"select * from ({query_tasks.training_set_sql(task)})",
                "select * from churn_training_set",
            ),
            (
                "select * from churn_training_set",
                f"select * from ({query_tasks.training_set_sql(task)})",
            ),
        ):
            (differ,) = con.execute(f"select count(*) from ({one} except all {other})").fetchone()
            assert differ == 0
    finally:
        con.close()


def test_train_declares_registers_and_scores_a_new_target_found_again_later(
    pipeline_copy, redis_db
):
    import redis

    from models import registry

    client = redis.Redis.from_url(redis_db, decode_responses=True)
    client.flushdb()
    cfg = settings.load()
    text = "PREDICT COUNT(transactions.*, 0, 7, days) = 0 FOR EACH customers.customer_id"
    with pytest.raises(pql.QueryError, match="--train declares and trains"):
        predict.parse(text, cfg)
    query = predict.parse(text, cfg, train=True)
    name = "pq_count_all_0_7d_eq_0"
    assert query.new and query.task.name == name
    with pytest.raises(predict.PredictError, match="needs --train"):
        predict.run(query, cfg, day=DAY, redis_url=redis_db)

    result = predict.run(query, cfg, day=DAY, redis_url=redis_db, train=True)
    built, run = result.training["training_set"], result.training["training"]
    assert (
        built["table"] == f"query_tasks.{name}_training_set"
        and 0 < built["positives"] < built["rows"]
    )
    assert run["model_name"] == name and run["promoted"] and run["model_version"] == "1"
    # registered like any task, tagged with its target, and its champion scored the day
    _, mlflow_client = registry.connect(cfg)
    tags = mlflow_client.get_registered_model(name).tags
    assert tags == {query_tasks.QUERY_TAG: query.task.query, query_tasks.ENTITY_TAG: "customer"}
    table = _partition(DAY, f"predictions.{name}_scores")
    assert len(table) == len(result.rows) > 0
    assert result.rows.reset_index(drop=True).equals(table)
    assert set(table["model_name"]) == {name} and set(table["model_version"]) == {"1"}

    # a later query (another process: only the registry knows the task) finds it without
    # training: by its target, or by its name, and its nightly scores by key lookup
    again = predict.parse(text, cfg)
    assert again.task == query.task and not again.new
    rescored = predict.run(again, cfg, day=DAY, redis_url=redis_db)
    assert rescored.training is None and rescored.rows.reset_index(drop=True).equals(table)
    some = list(table["customer_id"][:2])
    quoted = ", ".join(f"'{i}'" for i in some)
    looked_up = predict.run(
        predict.parse(f"PREDICT {name} FOR customers.customer_id IN ({quoted})", cfg),
        cfg,
        redis_url=redis_db,
    )
    assert list(looked_up.rows["probability"]) == list(table["probability"][:2])
    client.flushdb()
