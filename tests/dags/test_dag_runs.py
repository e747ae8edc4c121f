"""Each DAG end to end with dag.test() on small simulated data, in the order Assets chain them.

History is imported as an initial load; the last day is landed by `ingest` from the drop folder,
then build_features (GE gates, dbt through Cosmos, feast apply, materialize into a real Redis),
training with MLflow, and batch scoring. Also: idempotency and the failure path.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest

from skewless import importer, ingest, settings, simulate, warehouse

pytestmark = pytest.mark.slow

DAY = date(2025, 4, 14)  # the last simulated day


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db, redis_db):
    """SKEWLESS_VAR_DIR for the DAG tasks (they run in this process under dag.test())."""
    var_dir = tmp_path_factory.mktemp("dagvar")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKEWLESS_VAR_DIR", str(var_dir))
        mp.setenv("REDIS_URL", redis_db)
        for name in (
            "SKEWLESS_WAREHOUSE",
            "SKEWLESS_FEATURE_DIR",
            "SKEWLESS_FEAST_REGISTRY",
            "SKEWLESS_DROP_DIR",
            "MLFLOW_TRACKING_URI",
            "SKEWLESS_MLFLOW_ARTIFACTS",
        ):
            mp.delenv(name, raising=False)
        cfg = settings.load()
        # 400 customers: a week of holdout holds frauds; 100 days: churn needs a 30-day label horizon and a 30-day gap before its holdout
        frame = simulate.generate(customers=400, days=100, seed=11, start=date(2025, 1, 5))
        assert frame["event_timestamp"].max().date() == DAY
        history = simulate.write(
            frame[frame["event_timestamp"].dt.date < DAY], var_dir / "history.parquet"
        )
        importer.import_transactions(history)
        ingest.stage_days(frame[frame["event_timestamp"].dt.date == DAY], cfg)
        from skewless import pipeline

        pipeline.dbt(cfg, ["parse"])
        yield {"cfg": cfg, "frame": frame}


@pytest.fixture(scope="module")
def dags(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags


def run(dags, dag_id: str, day: date):
    dag_run = dags[dag_id].test(run_conf={"day": day.isoformat()})
    return dag_run


def table(cfg, sql: str) -> pd.DataFrame:
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_the_batch_loop_runs_in_order_and_is_idempotent(env, dags):
    cfg, frame = env["cfg"], env["frame"]
    day_rows = int((frame["event_timestamp"].dt.date == DAY).sum())

    assert run(dags, "ingest", DAY).state == "success"
    raw = "select * exclude (loaded_at) from raw.transactions order by transaction_id"
    first = table(cfg, raw)
    assert len(first) == len(frame)
    assert run(dags, "ingest", DAY).state == "success"  # re-run rewrites the day's partition
    pd.testing.assert_frame_equal(table(cfg, raw), first)

    assert run(dags, "build_features", DAY).state == "success"
    snapshot = table(cfg, "select max(event_timestamp) as t from customer_transaction_windows")
    assert snapshot["t"][0] == pd.Timestamp(DAY + timedelta(days=1))

    for dag_id in ("train_fraud", "train_churn_30d"):
        assert run(dags, dag_id, DAY).state == "success"

    assert run(dags, "batch_score", DAY).state == "success"
    fraud = table(cfg, "select * from predictions.fraud_scores")
    churn = table(cfg, "select * from predictions.churn_scores")
    assert len(fraud) == day_rows
    assert len(churn) == frame["customer_id"].nunique()
    assert run(dags, "batch_score", DAY).state == "success"
    pd.testing.assert_frame_equal(
        table(cfg, "select * from predictions.fraud_scores order by transaction_id"),
        fraud.sort_values("transaction_id").reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(
        table(cfg, "select * from predictions.churn_scores order by customer_id"),
        churn.sort_values("customer_id").reset_index(drop=True),
    )

    # the predictive queries of the batch path answer what the batch_score DAG wrote
    from skewless import pql, predict

    for text, dag_rows, key in (
        ("PREDICT churn_30d FOR EACH customers.customer_id", churn, "customer_id"),
        ("PREDICT fraud_probability FOR EACH transactions.transaction_id", fraud, "transaction_id"),
    ):
        answer = predict.run(pql.parse(text), cfg, day=DAY)
        pd.testing.assert_frame_equal(
            answer.rows, dag_rows.sort_values(key).reset_index(drop=True), check_dtype=False
        )


def log_requests(cfg, redis_url: str, day: date, n: int = 30) -> dict[str, int]:
    """Writes the serving log the sidecar would have written for the day's first n transactions,
    in two modes: exact (the offline truth, champion scores) and materialized (the same with a
    stale customer_tx_count_7d on the first 5). Returns the planted mismatches per mode."""
    import redis

    from models import registry
    from models.config import model_config
    from models.datasets import feature_columns, predict
    from serving import log
    from tests.helpers import day_truth_rows

    truth = day_truth_rows(cfg.warehouse_path, day, n)
    names = feature_columns("fraud")
    mlflow, client = registry.connect(cfg)
    version = registry.champion_version(client, "fraud")
    booster = registry.load_version(mlflow, "fraud", version)
    threshold = registry.alert_threshold(client, "fraud", version, model_config(cfg, "fraud"))
    planted = {"exact": 0, "materialized": 5}
    redis_client = redis.Redis.from_url(redis_url)
    try:
        for mode, stale in planted.items():
            features = truth[names].copy()
            features.loc[features.index[:stale], "customer_tx_count_7d"] -= 1
            scores = predict(booster, features)
            for i, row in truth.iterrows():
                values = features.loc[i].to_dict()
                log.append(
                    redis_client,
                    {
                        "request_id": f"{mode}-{row['transaction_id']}",
                        "transaction_id": row["transaction_id"],
                        "customer_id": row["customer_id"],
                        "merchant_id": row["merchant_id"],
                        "amount": float(row["amount"]),
                        "event_timestamp": row["event_timestamp"].isoformat(),
                        "served_at": row["event_timestamp"].isoformat(),
                        "mode": mode,
                        "features": {k: None if v != v else float(v) for k, v in values.items()},
                        "features_missing": [],
                        "feature_timestamps": {},
                        "model_name": "fraud",
                        "model_version": version,
                        "fraud_probability": float(scores[i]),
                        "decision": "decline" if scores[i] >= threshold else "approve",
                        "latency_ms": 1.0,
                    },
                )
    finally:
        redis_client.close()
    return planted


def test_skew_report_flushes_the_log_and_reports_each_served_mode(env, dags, redis_db):
    from mlflow import MlflowClient

    from monitoring import skew_gate, skew_publish

    cfg = env["cfg"]
    planted = log_requests(cfg, redis_db, DAY)
    dag_run = run(dags, "skew_report", DAY)
    # the materialized mode's 5 stale values in 30 cross the default match-rate threshold: every
    # report is written, then the gate fails the run
    assert dag_run.state == "failed"
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert {k: v for k, v in states.items() if v != "success"} == {("gate", -1): "failed"}
    assert {i for t, i in states if t == "report"} == {0, 1}  # one per served mode

    logged = table(cfg, "select mode, count(*) as n from serving.serving_log group by mode")
    assert dict(zip(logged["mode"], logged["n"], strict=True)) == {"exact": 30, "materialized": 30}
    client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(skew_publish.EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.params["mode"] for r in runs} == set(planted)
    for mode, stale in planted.items():
        json_path, html_path = skew_publish.report_paths(cfg, mode, DAY)
        report = json.loads(json_path.read_text())
        assert report["requests"] == 30 and report["date"] == DAY.isoformat()
        stats = report["features"]["customer_tx_count_7d"]
        assert stats["match_rate"] == pytest.approx(1 - stale / 30)
        assert html_path.read_text().startswith("<!DOCTYPE html>")
        (run_,) = [r for r in runs if r.data.params["mode"] == mode]
        assert run_.data.metrics["match_rate.customer_tx_count_7d"] == pytest.approx(
            stats["match_rate"]
        )
        causes = report["causes"]
        # materialized: the stale values are staleness unless an event arrived late (simulated)
        assert causes["logic"] == 0 and causes["late_arrival"] + causes["staleness"] == stale
        gating = {a["feature"] for a in report["anomalies"] if a["gate"]}
        assert gating == ({"customer_tx_count_7d"} if stale else set()), report["anomalies"]
    summaries = [
        {
            "mode": m,
            "anomalies": json.loads(skew_publish.report_paths(cfg, m, DAY)[0].read_text())[
                "anomalies"
            ],
        }
        for m in planted
    ]
    with pytest.raises(skew_gate.SkewGateFailed, match=r"mode\(s\) materialized") as failed:
        skew_gate.check(summaries)
    assert "customer_tx_count_7d" in str(failed.value) and "match_rate" in str(failed.value)
    assert skew_gate.check([s for s in summaries if s["mode"] == "exact"]) == {
        "exact": {"anomalies": 0, "gating": 0}
    }


def test_a_bad_batch_stops_the_run_with_a_report_and_loses_nothing(env, dags):
    cfg = env["cfg"]
    bad_day = DAY + timedelta(days=1)
    rows = pd.DataFrame(
        {
            "transaction_id": [f"bad{i}" for i in range(20)],
            "event_timestamp": [pd.Timestamp(bad_day) + pd.Timedelta(minutes=i) for i in range(20)],
            "customer_id": ["c1"] * 20,
            "merchant_id": ["m1"] * 20,
            # most amounts are negative: the rows are quarantined, and the day as a whole is suspect
            "amount": [-5.0] * 15 + [10.0] * 5,
            "is_fraud": [0] * 20,
        }
    )
    ingest.stage_days(rows, cfg)
    assert run(dags, "ingest", bad_day).state == "success"  # landing works: rows are quarantined
    dag_run = run(dags, "build_features", bad_day)
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["validate_raw"] == "failed"
    assert all(s in ("upstream_failed", None) for t, s in states.items() if t != "validate_raw")
    # the readable report was kept, and nothing was lost
    reports = sorted((cfg.var_dir / "quality").glob(f"raw_transactions_{bad_day}_*.json"))
    assert reports and "quarantine_share_at_most" in reports[-1].read_text()
    counts = table(
        cfg,
        "select (select count(*) from raw.transactions where transaction_id like 'bad%') as loaded,"
        " (select count(*) from raw.transactions_quarantine where transaction_id like 'bad%') as quarantined",
    )
    assert (counts["loaded"][0], counts["quarantined"][0]) == (5, 15)
