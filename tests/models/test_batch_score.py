"""Batch scoring: every transaction / customer of the day, partition replaced, Redis for churn."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from models import batch_score, registry, training
from skewless import settings, warehouse
from skewless.tasks import TASKS

pytestmark = pytest.mark.slow

DAY = date(2025, 4, 14)  # the last day of the shared pipeline


def _table(name: str, order: str):
    con = warehouse.connect(settings.load().warehouse_path, read_only=True)
    try:
        return con.execute(f"select * from {name} order by {order}").fetchdf()
    finally:
        con.close()


def _count(sql: str, params: list) -> int:
    con = warehouse.connect(settings.load().warehouse_path, read_only=True)
    try:
        return con.execute(sql, params).fetchone()[0]
    finally:
        con.close()


def test_fraud_scoring_replaces_the_day_and_is_idempotent(pipeline_copy):
    with pytest.raises(registry.NoChampion, match="skewless train fraud"):
        batch_score.score("fraud", DAY)
    model = training.train("fraud")

    first = batch_score.score("fraud", DAY)
    table_once = _table(TASKS["fraud"].predictions_table, "score_date, transaction_id")
    second = batch_score.score("fraud", DAY)
    table_twice = _table(TASKS["fraud"].predictions_table, "score_date, transaction_id")
    assert table_twice.equals(table_once)

    day_transactions = _count(
        "select count(*) from stg_raw__transactions where event_timestamp::date = ?", [DAY]
    )
    assert first["rows"] == second["rows"] == len(table_once) == day_transactions > 0
    assert table_once["transaction_id"].is_unique
    assert (table_once["score_date"].dt.date == DAY).all()
    assert table_once["fraud_probability"].between(0, 1).all()
    threshold = first["alert_threshold"]
    assert (table_once["is_alert"] == (table_once["fraud_probability"] >= threshold)).all()
    assert first["alerts"] == int(table_once["is_alert"].sum())
    assert set(table_once["model_version"]) == {model["model_version"]} == {first["model_version"]}

    # another day is added beside it, not over it
    batch_score.score("fraud", date(2025, 4, 13))
    both = _table(TASKS["fraud"].predictions_table, "score_date, transaction_id")
    assert both[both["score_date"].dt.date == DAY].reset_index(drop=True).equals(table_once)
    assert len(both) > len(table_once)


def test_churn_scores_every_customer_into_the_table_and_redis(pipeline_copy, redis_db):
    import redis

    url = redis_db  # a database of its own on the session's server
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    # 45 days hold ~2 weeks of observable churn labels: explicit windows, no 30-day gap
    with pytest.warns(UserWarning, match="gap"):
        model = training.train(
            "churn",
            train_start=datetime(2025, 3, 1),
            train_end=datetime(2025, 3, 9),
            test_start=datetime(2025, 3, 9),
            test_end=datetime(2025, 3, 16),
        )
    assert model["model_name"] == "churn_30d" and model["promoted"]

    first = batch_score.score("churn_30d", DAY, redis_url=url)
    table_once = _table(TASKS["churn_30d"].predictions_table, "score_date, customer_id")
    second = batch_score.score("churn_30d", DAY, redis_url=url)
    table_twice = _table(TASKS["churn_30d"].predictions_table, "score_date, customer_id")
    assert table_twice.equals(table_once)
    customers = _count("select count(distinct customer_id) from stg_raw__transactions", [])
    assert first["rows"] == second["rows"] == len(table_once) == customers
    assert first["redis"]["keys_written"] == customers

    keys = client.keys(TASKS["churn_30d"].scores_key_prefix + "*")
    assert len(keys) == customers
    for row in table_once.sample(20, random_state=0).itertuples():
        stored = client.hgetall(f"{TASKS['churn_30d'].scores_key_prefix}{row.customer_id}")
        assert float(stored["churn_probability"]) == row.churn_probability  # exact round trip
        assert stored["model_version"] == model["model_version"]
        assert stored["score_date"] == DAY.isoformat()

    # a backfill of an earlier day fills its partition but leaves the newer scores in Redis
    backfill = batch_score.score("churn_30d", date(2025, 4, 10), redis_url=url)
    assert backfill["redis"]["keys_written"] == 0
    assert {client.hget(k, "score_date") for k in keys} == {DAY.isoformat()}
    client.flushdb()


def test_scoring_past_the_built_features_is_refused(pipeline_copy):
    training.train("fraud")
    con = warehouse.connect(settings.load().warehouse_path)
    con.execute(
        "insert into raw.transactions (transaction_id, event_timestamp, customer_id, merchant_id, "
        "amount) values ('late-1', timestamp '2025-04-14 12:00:00', 'c000001', 'm000001', 10)"
    )
    con.close()
    with pytest.raises(
        batch_score.MissingFeatures, match=r"1 of \d+ transactions .*skewless build"
    ):
        batch_score.score("fraud", DAY)
