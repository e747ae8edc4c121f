"""The skew report (monitoring/skew.py) on a copy of the serving warehouse with synthetic log rows."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring import skew
from monitoring.flush import _DDL, COLUMNS, TABLE
from tests.helpers import PLACEMENT_VARS, day_truth_rows

CONTRACT = {
    "requests",
    "mode",
    "features",
    "score",
    "decisions",
    "quality",
    "causes",
}
EXTRA = {"date", "threshold", "model_versions", "examples", "histograms", "thresholds", "anomalies"}
EXTRA |= {"lags", "arrivals"}
QUALITY_KEYS = {"served_average_precision", "offline_average_precision"}
QUALITY_KEYS |= {"served_recall", "offline_recall", "labelled", "frauds"}
FEATURE_KEYS = {"match_rate", "mean_abs_diff", "p95_abs_diff", "js_divergence", "psi"}
N = 40


@pytest.fixture
def env(serving_env, tmp_path, monkeypatch):
    """A writable copy of the serving warehouse where nothing arrived late."""
    from skewless import settings, warehouse

    var_dir = tmp_path / "var"
    shutil.copytree(serving_env.var_dir, var_dir)
    monkeypatch.setenv("SKEWLESS_VAR_DIR", str(var_dir))
    for name in (*PLACEMENT_VARS, "SKEWLESS_MODEL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    cfg = settings.load()
    con = warehouse.connect(cfg.warehouse_path)
    try:
        con.execute("update raw.transactions set arrival_timestamp = null")
    finally:
        con.close()
    return cfg


@pytest.fixture
def day_truth(env, serving_env):
    """The offline rows and champion scores of N transactions of the last day."""
    from models import registry
    from models.datasets import feature_columns, predict

    day = (serving_env.cutoff - timedelta(days=1)).date()
    truth = day_truth_rows(env.warehouse_path, day, N)
    mlflow, _ = registry.connect(env)
    booster = registry.load_version(mlflow, "fraud", serving_env.model_version)
    truth["score"] = predict(booster, truth[feature_columns("fraud")])
    assert len(truth) == N
    return day, truth


def version_threshold(cfg, version: str) -> float:
    """The alert threshold the model version was trained with (its registry tag)."""
    from models import registry
    from models.config import model_config

    _, client = registry.connect(cfg)
    return registry.alert_threshold(client, "fraud", version, model_config(cfg, "fraud"))


def insert_log(
    cfg,
    truth: pd.DataFrame,
    mode: str,
    version: str,
    features=None,
    threshold=None,
    feature_timestamps=None,
) -> None:
    """Writes one serving_log row per truth row, serving ``features`` (default: the truth's)
    with the score ``truth["score"]`` (decline at ``threshold``, default the version's)."""
    from models.datasets import feature_columns
    from skewless import warehouse

    if threshold is None:
        threshold = version_threshold(cfg, version)
    names = feature_columns("fraud")
    features = truth[names] if features is None else features[names]
    rows = pd.DataFrame(
        {
            "request_id": [f"{mode}-{t}" for t in truth["transaction_id"]],
            "stream_id": [f"{i}-0" for i in range(len(truth))],
            "transaction_id": truth["transaction_id"],
            "customer_id": truth["customer_id"],
            "merchant_id": truth["merchant_id"],
            "amount": truth["amount"],
            "event_timestamp": truth["event_timestamp"],
            "served_at": truth["event_timestamp"],
            "mode": mode,
            "features": [
                json.dumps({k: (None if v != v else float(v)) for k, v in row.items()})
                for row in features.to_dict("records")
            ],
            "features_missing": "[]",
            "feature_timestamps": "{}" if feature_timestamps is None else feature_timestamps,
            "model_name": "fraud",
            "model_version": version,
            "fraud_probability": truth["score"],
            "decision": np.where(truth["score"] >= threshold, "decline", "approve"),
            "latency_ms": 1.0,
        }
    )
    con = warehouse.connect(cfg.warehouse_path)
    try:
        for statement in _DDL:
            con.execute(statement)
        con.register("batch", rows)
        con.execute(f"insert into {TABLE} select {', '.join(COLUMNS)} from batch")
    finally:
        con.close()


def check_contract(report: dict, *, printed: bool = False) -> None:
    """The contract keys, unchanged, plus this report's additions (``skewless skew-report
    --json`` prints all but the plot data)."""
    assert set(report) == CONTRACT | EXTRA - ({"histograms"} if printed else set())
    assert set(report["score"]) == {"mean_abs_drift", "p95_abs_drift"}
    assert set(report["decisions"]) == {"flipped", "missed_frauds", "false_alerts"}
    assert set(report["quality"]) == QUALITY_KEYS
    assert set(report["causes"]) == {"late_arrival", "staleness", "logic"}
    for stats in report["features"].values():
        assert set(stats) == FEATURE_KEYS
    examples = report["examples"]
    assert set(examples) == {"features", "training", "serving", "impact"}
    assert 0 < len(examples["impact"]) <= skew.measures.EXAMPLES
    assert set(examples["features"]) <= set(report["features"])
    if not printed:
        assert set(report["histograms"]) == {"features", "score", "score_drift"}
    json.dumps(report, allow_nan=False)


def test_exact_copy_of_the_offline_truth_has_no_skew(env, serving_env, day_truth):
    from models.datasets import feature_columns

    day, truth = day_truth
    insert_log(env, truth, "exact", serving_env.model_version)
    report = skew.skew_report(cfg=env)  # defaults: the only mode, the last served day
    check_contract(report)
    assert report["requests"] == N and report["mode"] == "exact"
    assert list(report["features"]) == feature_columns("fraud")
    for name, stats in report["features"].items():
        assert stats["match_rate"] == 1.0, name
        assert stats["js_divergence"] == pytest.approx(0.0, abs=1e-12)
        assert stats["psi"] == pytest.approx(0.0, abs=1e-12)
    assert report["score"]["mean_abs_drift"] == pytest.approx(0.0, abs=1e-12)
    assert report["decisions"] == {"flipped": 0, "missed_frauds": 0, "false_alerts": 0}
    assert report["causes"] == {"late_arrival": 0, "staleness": 0, "logic": 0}
    for lag in report["lags"].values():  # no row times logged: nothing to date
        assert lag["mismatching"] == 0 and lag["no_row"] == N
    assert report["anomalies"] == []
    assert report["thresholds"]["defaults"]["match_rate"] == {"min": 0.99, "gate": True}
    assert skew.skew_report(day, mode="exact", cfg=env) == report


def test_materialized_mismatches_are_staleness(env, serving_env, day_truth):
    _, truth = day_truth
    served = truth.copy()
    served.loc[:4, "customer_tx_count_7d"] += 1
    # customer rows 2 hours old for the first 5 requests (those that mismatch), 30 minutes for
    # the rest; merchant rows as of the request, but the last request had none
    ages = [timedelta(hours=2)] * 5 + [timedelta(minutes=30)] * (N - 6)
    ages.append(timedelta(minutes=30, microseconds=-1))  # times with and without microseconds
    stamps = [
        json.dumps(
            {
                "customer_transaction_windows": (t - age).isoformat(),
                **({} if i == N - 1 else {"merchant_transaction_windows": t.isoformat()}),
            }
        )
        for i, (t, age) in enumerate(zip(truth["event_timestamp"], ages, strict=True))
    ]
    insert_log(
        env, truth, "materialized", serving_env.model_version, served, feature_timestamps=stamps
    )
    report = skew.skew_report(cfg=env)
    check_contract(report)
    customer, merchant = (
        report["lags"][g] for g in ("customer_transaction_windows", "merchant_transaction_windows")
    )
    assert customer["mismatching"] == 5 and customer["no_row"] == 0
    assert customer["age_seconds"] == {"median": 7200.0, "p90": 7200.0, "max": 7200.0}
    assert customer["all_age_seconds"]["median"] == 1800.0
    assert merchant["mismatching"] == 0 and merchant["no_row"] == 1
    assert merchant["all_age_seconds"]["max"] == 0.0
    out = skew.format_table(report)
    assert "customer_transaction_windows: served ~2.0 h stale" in out
    assert "merchant_transaction_windows: every served value matches; 1 requests had no row" in out
    stats = report["features"]["customer_tx_count_7d"]
    assert stats["match_rate"] == pytest.approx(1 - 5 / N)
    assert stats["mean_abs_diff"] == pytest.approx(5 / N)
    assert report["features"]["amount"]["match_rate"] == 1.0
    assert report["causes"] == {"late_arrival": 0, "staleness": 5, "logic": 0}
    # 35 of 40 served right: under the default 0.99, an anomaly of that feature only
    match = [a for a in report["anomalies"] if a["metric"] == "match_rate"]
    assert [(a["feature"], a["mode"], a["gate"]) for a in match] == [
        ("customer_tx_count_7d", "materialized", True)
    ]
    assert match[0]["value"] == pytest.approx(1 - 5 / N) and match[0]["threshold"] == 0.99


def test_exact_mismatch_from_a_late_event_is_late_arrival(env, serving_env, day_truth):
    from skewless import warehouse

    _, truth = day_truth
    truth = truth[truth["customer_tx_count_30d"] >= 1]
    late_row = truth.iloc[0]
    other = truth[truth["customer_id"] != late_row["customer_id"]].iloc[:1]
    truth = pd.concat([truth.iloc[:1], other], ignore_index=True)
    con = warehouse.connect(env.warehouse_path)
    try:
        (earlier,) = con.execute(
            "select transaction_id from stg_raw__transactions where customer_id = ? "
            "and event_timestamp < ? and event_timestamp >= ? - interval 30 day "
            "order by event_timestamp desc limit 1",
            [late_row["customer_id"], late_row["event_timestamp"], late_row["event_timestamp"]],
        ).fetchone()
        con.execute(
            "update raw.transactions set arrival_timestamp = ? where transaction_id = ?",
            [late_row["event_timestamp"] + timedelta(minutes=5), earlier],
        )
    finally:
        con.close()
    served = truth.copy()
    # the exact state had not seen the late event; the second row's error has no such excuse
    served["customer_tx_count_30d"] -= 1
    insert_log(env, truth, "exact", serving_env.model_version, served)
    report = skew.skew_report(mode="exact", cfg=env)
    check_contract(report)
    assert report["requests"] == 2
    assert report["features"]["customer_tx_count_30d"]["match_rate"] == 0.0
    assert report["causes"] == {"late_arrival": 1, "staleness": 0, "logic": 1}


def test_empty_or_missing_log_is_a_clear_error(env, capsys):
    from skewless import cli, warehouse

    with pytest.raises(skew.SkewReportError, match="skewless replay and skewless flush-log"):
        skew.skew_report(cfg=env)
    con = warehouse.connect(env.warehouse_path)
    try:
        for statement in _DDL:
            con.execute(statement)
    finally:
        con.close()
    with pytest.raises(skew.SkewReportError, match="empty"):
        skew.skew_report(cfg=env)
    assert cli.main(["skew-report"]) == 1
    assert "flush-log first" in capsys.readouterr().err


def test_cli_json_and_table(env, serving_env, day_truth, capsys):
    from skewless import cli

    day, truth = day_truth
    insert_log(env, truth, "streaming", serving_env.model_version)
    assert cli.main(["skew-report", "--json", "--date", day.isoformat()]) == 0
    report = json.loads(capsys.readouterr().out)
    check_contract(report, printed=True)
    assert report["mode"] == "streaming" and report["requests"] == N
    assert cli.main(["skew-report", "--mode", "streaming"]) == 0
    out = capsys.readouterr().out
    assert "customer_tx_count_7d" in out and "mismatch causes" in out
    assert "prediction impact:" in out and "features at serving time:" in out


def test_arrivals_count_the_late_events_and_what_streaming_drops(
    env, serving_env, day_truth, monkeypatch
):
    from skewless import warehouse

    day, truth = day_truth
    con = warehouse.connect(env.warehouse_path)
    try:
        ids = [
            r[0]
            for r in con.execute(
                "select transaction_id from raw.transactions where event_timestamp::date = ?"
                " order by transaction_id limit 5",
                [day],
            ).fetchall()
        ]
        for i, transaction_id in enumerate(ids):  # 3 two hours late, 2 half an hour
            late = "2 hours" if i < 3 else "30 minutes"
            con.execute(
                "update raw.transactions set arrival_timestamp = event_timestamp"
                f" + interval '{late}' where transaction_id = ?",
                [transaction_id],
            )
        (events,) = con.execute(
            "select count(*) from stg_raw__transactions where event_timestamp::date = ?", [day]
        ).fetchone()
    finally:
        con.close()
    monkeypatch.setenv("SKEWLESS_STREAM_ALLOWED_LATENESS_SECONDS", "3600")
    monkeypatch.setenv("SKEWLESS_STREAM_LAG_SECONDS", "10")
    insert_log(env, truth, "streaming", serving_env.model_version)
    insert_log(env, truth, "exact", serving_env.model_version)
    streaming = skew.skew_report(day, mode="streaming", cfg=env)
    assert streaming["arrivals"] == {
        "events": events,
        "late": 5,
        "delay_seconds": {"median": 7200.0, "p90": 7200.0, "max": 7200.0},
        "streaming": {
            "processing_lag_seconds": 10.0,
            "allowed_lateness_seconds": 3600.0,
            "dropped_late": 3,
            "share": 3 / events,
        },
    }
    text = skew.format_table(streaming)
    assert "5 of " in text and "drops those over 1.0 h late: 3" in text
    exact = skew.skew_report(day, mode="exact", cfg=env)
    assert "streaming" not in exact["arrivals"] and exact["arrivals"]["late"] == 5


def with_threshold(cfg, version: str, threshold: float):
    """Sets the alert threshold of a model version in cfg's registry (a copy of the test's)."""
    from models import registry

    _, client = registry.connect(cfg)
    client.set_model_version_tag("fraud", version, registry.THRESHOLD_TAG, repr(threshold))
    return cfg


def set_labels(cfg, labels: dict[str, int]) -> None:
    from skewless import warehouse

    con = warehouse.connect(cfg.warehouse_path)
    try:
        for transaction_id, label in labels.items():
            con.execute(
                "update raw.transactions set is_fraud = ? where transaction_id = ?",
                [label, transaction_id],
            )
    finally:
        con.close()


@pytest.fixture
def planted(env, serving_env, day_truth, tmp_path):
    """Two planted flips: the top-scored transaction, made a fraud, is served a low score (a
    missed fraud, with a skewed customer_tx_count_7d); the lowest-scored, made legit, is served a
    high one (a false alert). The threshold is the top score, so nothing else flips."""
    day, truth = day_truth
    truth = truth.sort_values(["score", "transaction_id"]).reset_index(drop=True)
    low, top = truth.index[0], truth.index[-1]
    threshold = float(truth.at[top, "score"])
    cfg = with_threshold(env, serving_env.model_version, threshold)
    set_labels(cfg, {truth.at[top, "transaction_id"]: 1, truth.at[low, "transaction_id"]: 0})
    truth.loc[top, "is_fraud"], truth.loc[low, "is_fraud"] = 1, 0
    served = truth.copy()
    served.loc[top, "customer_tx_count_7d"] += 3
    logged = truth.copy()
    logged.loc[top, "score"], logged.loc[low, "score"] = 0.0, 0.99
    insert_log(cfg, logged, "exact", serving_env.model_version, served, threshold=threshold)
    return cfg, truth, logged, threshold, truth.loc[top], truth.loc[low]


def test_planted_flips_are_counted_and_shown_in_the_three_tables(planted):
    from models.datasets import feature_columns

    cfg, truth, _, threshold, top, low = planted
    report = skew.skew_report(cfg=cfg)
    check_contract(report)
    assert report["threshold"] == threshold
    assert report["decisions"] == {"flipped": 2, "missed_frauds": 1, "false_alerts": 1}

    examples = report["examples"]
    impact = examples["impact"]
    assert len(impact) == skew.measures.EXAMPLES
    missed, alert = impact[0], impact[1]
    assert missed["transaction_id"] == top["transaction_id"]
    assert missed["consequence"] == "missed fraud" and missed["is_fraud"] == 1
    assert (missed["offline_decision"], missed["served_decision"]) == ("decline", "approve")
    assert missed["offline_score"] == pytest.approx(top["score"], abs=1e-12)
    assert missed["served_score"] == 0.0
    assert missed["score_drift"] == pytest.approx(-top["score"], abs=1e-12)
    assert alert["transaction_id"] == low["transaction_id"]
    assert alert["consequence"] == "false alert" and alert["served_decision"] == "decline"
    assert alert["score_drift"] == pytest.approx(0.99 - low["score"], abs=1e-12)
    assert all(r["consequence"] == "none" for r in impact[2:])

    # the training and serving tables: the same transactions, measured feature values
    assert [r["transaction_id"] for r in examples["training"]] == [
        r["transaction_id"] for r in impact
    ]
    assert examples["features"][0] == "customer_tx_count_7d"
    names = feature_columns("fraud")
    training, serving = examples["training"][0], examples["serving"][0]
    assert training["customer_tx_count_7d"] == top["customer_tx_count_7d"]
    assert serving["customer_tx_count_7d"] == top["customer_tx_count_7d"] + 3
    assert all(training[n] == serving[n] for n in names if n != "customer_tx_count_7d")
    assert set(names) <= set(training) and set(names) <= set(serving)

    text = skew.format_table(report)
    assert "missed fraud" in text and "false alert" in text


def test_recall_and_average_precision_match_sklearn(planted):
    from sklearn.metrics import average_precision_score, recall_score

    cfg, truth, logged, threshold, _, _ = planted
    report = skew.skew_report(cfg=cfg)
    known = truth["is_fraud"].notna()
    y = truth.loc[known, "is_fraud"].astype(int)
    q = report["quality"]
    assert q["labelled"] == int(known.sum()) and q["frauds"] == int(y.sum())
    assert q["served_recall"] == pytest.approx(
        recall_score(y, logged.loc[known, "score"] >= threshold)
    )
    assert q["offline_recall"] == pytest.approx(
        recall_score(y, truth.loc[known, "score"] >= threshold)
    )
    assert q["offline_recall"] > q["served_recall"]  # the missed fraud
    assert q["served_average_precision"] == pytest.approx(
        average_precision_score(y, logged.loc[known, "score"])
    )
    assert q["offline_average_precision"] == pytest.approx(
        average_precision_score(y, truth.loc[known, "score"])
    )


def test_training_on_the_serving_log_takes_the_features_as_served(env, serving_env, day_truth):
    """``source="serving-log"``: the labelled rows of served transactions with the features they
    were scored on (train like you serve); one mode's with ``serving-log:<mode>``."""
    from models import datasets

    day, truth = day_truth
    served = truth.copy()
    served["customer_tx_count_7d"] += 100  # what the sidecar served differs from the truth
    insert_log(env, truth.head(30), "exact", serving_env.model_version)
    insert_log(env, truth, "streaming", serving_env.model_version, served)
    start = datetime.combine(day, datetime.min.time())
    window = [(start, start + timedelta(days=1))]
    names = datasets.feature_columns("fraud")

    def load(source):
        return datasets.load_windows("fraud", window, cfg=env, source=source)

    warehouse_frame = load("warehouse")
    labelled = warehouse_frame.keys["transaction_id"].isin(truth["transaction_id"])
    exact = load("serving-log:exact")
    assert exact.source == "serving-log:exact" and list(exact.X.columns) == names
    assert set(exact.keys["transaction_id"]) == set(truth.head(30)["transaction_id"]) & set(
        warehouse_frame.keys["transaction_id"]
    )
    by_id = truth.set_index("transaction_id")
    ids = exact.keys["transaction_id"]
    assert np.allclose(exact.X.to_numpy(), by_id.loc[ids, names].to_numpy(), equal_nan=True)
    assert (exact.y.to_numpy() == by_id.loc[ids, "is_fraud"].to_numpy()).all()

    streaming = load("serving-log:streaming")
    assert len(streaming.X) == int(labelled.sum())
    assert (streaming.X["customer_tx_count_7d"].to_numpy() >= 100).all()
    latest = load("serving-log")  # any mode: the latest request of each transaction
    assert len(latest.X) == len(streaming.X)
    with pytest.raises(ValueError, match=r"serving-log:materialized: no served request"):
        load("serving-log:materialized")
