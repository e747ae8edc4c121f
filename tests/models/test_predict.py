"""Predictive queries on the pipeline: FOR EACH is batch scoring, FOR <key> = looks up or scores.

The realtime form (a transaction scored through the sidecar) is in tests/serving/test_predict.py.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from models import batch_score, training
from skewless import pql, predict, settings, warehouse
from skewless.tasks import TASKS

pytestmark = pytest.mark.slow

DAY = date(2025, 4, 14)  # the last day of the shared pipeline
CHURN = TASKS["churn_30d"]


def _partition(day: date):
    con = warehouse.connect(settings.load().warehouse_path, read_only=True)
    try:
        return con.execute(
            f"select * from {CHURN.predictions_table} where score_date = ? order by customer_id",
            [day],
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
