"""Training logs to MLflow, registers a version per task and moves `champion` only on a win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models import datasets, training
from skewless import settings

pytestmark = pytest.mark.slow

# A one-split, one-tree model: a deliberately weak challenger / first champion.
STUMP = {"fraud": {"lightgbm": {"num_boost_round": 1, "num_leaves": 2}}}


def _client():
    from mlflow import MlflowClient

    uri = settings.load().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_training_logs_params_metrics_artifacts_and_registers(pipeline_copy, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # anything written to ./mlruns would show up here
    result = training.train("fraud")

    assert result["task"] == "fraud" and result["model_name"] == "fraud"
    assert result["model_version"] == "1"
    assert result["promoted"] is True and result["champion_version"] == "1"
    metrics = result["metrics"]
    names = ("roc_auc", "average_precision", "card_precision_at_k", "precision_at_k_per_day")
    names += ("recall_at_threshold",)
    for name in names:
        assert 0.0 <= metrics[name] <= 1.0, name
    # the threshold comes from the committed rule: alerts per day at the investigators' capacity
    assert metrics["threshold_rule"] == "daily_capacity(100)"
    assert result["alert_threshold"] == metrics["threshold"]
    per_day = result["test_rows"] / metrics["days"]
    assert metrics["alerts_per_day"] == pytest.approx(min(100, per_day), rel=0.02)
    assert metrics["roc_auc"] > 0.6  # far better than chance even on 150 customers
    assert result["train_rows"] > 1000 and result["test_rows"] > 100
    assert result["windows"]["gap_days"] == 7.0

    client = _client()
    run = client.get_run(result["run_id"])
    params = run.data.params
    assert params["feature_service"] == "fraud_v1"
    assert params["train_end"] == result["windows"]["train_end"]
    assert params["test_start"] == result["windows"]["test_start"]
    assert params["lgb_num_leaves"] == "15" and params["num_boost_round"] == "600"
    assert params["lgb_max_bin"] == "4095"
    assert len(params["data_fingerprint"]) == 64
    assert run.data.tags["data_fingerprint"] == params["data_fingerprint"]
    for name in names:
        assert run.data.metrics[name] == pytest.approx(metrics[name])
    assert run.data.tags["promotion.reason"] == "first registered model"

    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(pipeline_copy / "mlflow" / "artifacts" / "fraud")
    features = json.loads((artifacts / "features.json").read_text())
    assert features["feature_service"] == "fraud_v1"
    assert features["features"] == datasets.feature_columns("fraud")
    window = json.loads((artifacts / "data_window.json").read_text())
    assert window["train_rows"] == result["train_rows"]
    assert window["fingerprints"]["data"] == params["data_fingerprint"]
    for plot in ("pr_curve", "roc_curve", "feature_importance"):
        assert (artifacts / "plots" / f"{plot}.png").stat().st_size > 1000

    version = client.get_model_version_by_alias("fraud", "champion")
    assert str(version.version) == "1" and version.run_id == result["run_id"]
    assert version.tags["feature_service"] == "fraud_v1"
    assert float(version.tags["alert_threshold"]) == result["alert_threshold"]
    import mlflow.lightgbm

    booster = mlflow.lightgbm.load_model("models:/fraud@champion")
    assert booster.feature_name() == datasets.feature_columns("fraud")
    assert not (tmp_path / "mlruns").exists()

    # the same data gives the same fingerprint and, deterministic, the same model and metrics
    again = training.train("fraud", register=False)
    assert again["data_fingerprint"] == result["data_fingerprint"]
    assert again["metrics"] == result["metrics"]
    assert again["promoted"] is False and again["model_version"] is None
    assert again["champion_version"] == "1"


def test_champion_moves_only_when_the_challenger_wins(pipeline_copy, model_config_override):
    model_config_override(STUMP)
    first = training.train("fraud")
    assert first["promoted"] is True and first["champion_version"] == "1"

    model_config_override({})  # the committed config: a real model
    better = training.train("fraud")
    promotion = better["promotion"]
    assert promotion["champion_score"] == pytest.approx(first["metrics"]["average_precision"])
    assert promotion["challenger_score"] > promotion["champion_score"]
    assert better["promoted"] is True
    assert better["champion_version"] == better["model_version"] == "2"
    assert better["previous_champion_version"] == "1"

    model_config_override(STUMP)
    worse = training.train("fraud")
    assert worse["model_version"] == "3"
    assert worse["promoted"] is False
    assert worse["promotion"]["champion_score"] == pytest.approx(
        better["metrics"]["average_precision"]
    )
    assert worse["champion_version"] == "2"
    client = _client()
    assert str(client.get_model_version_by_alias("fraud", "champion").version) == "2"
    run = client.get_run(worse["run_id"])
    assert (
        run.data.metrics["champion_average_precision"]
        > run.data.metrics["challenger_average_precision"]
    )
    assert run.data.tags["promotion.promoted"] == "False"
    assert "does not beat" in run.data.tags["promotion.reason"]

    # a margin from the config: even the real model does not beat itself by 0.01
    model_config_override({"fraud": {"promotion": {"min_improvement": 0.01}}})
    same = training.train("fraud")
    assert same["promoted"] is False and same["champion_version"] == "2"
