"""`skewless train` / `skewless score` as a user runs them: a real subprocess, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skewless import cli

pytestmark = pytest.mark.slow

SKEWLESS = str(Path(sys.executable).parent / "skewless")


def run(*args):
    return subprocess.run(
        [SKEWLESS, *args], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )


def test_train_fraud_json_prints_the_metrics(pipeline_copy):
    windows = ["--train-start", "2025-03-01", "--train-end", "2025-04-01"]
    windows += ["--test-start", "2025-04-08", "--test-end", "2025-04-15"]
    proc = run("train", "fraud", *windows, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)  # nothing but the JSON on stdout
    assert 0.5 < out["roc_auc"] <= 1.0
    assert 0.0 < out["average_precision"] <= 1.0
    assert out["metrics"]["roc_auc"] == out["roc_auc"]
    assert out["windows"]["train_start"] == "2025-03-01T00:00:00"
    assert out["windows"]["test_end"] == "2025-04-15T00:00:00"
    assert out["model_version"] == "1" and out["promoted"] is True

    proc = run("score", "fraud")  # the champion just trained, the last day by default
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = json.loads(proc.stdout)
    assert scored["score_date"] == "2025-04-14" and scored["rows"] > 0


def test_train_refuses_bad_windows_naming_the_option(shared_env, capsys):
    code = cli.main(["train", "fraud", "--train-start", "2025-04-01", "--train-end", "2025-03-01"])
    assert code == 2
    captured = capsys.readouterr()
    assert "train_start" in captured.err and captured.out == ""


@pytest.fixture
def shared_env(built_pipeline, monkeypatch):
    built_pipeline.env(monkeypatch)


def test_predict_train_declares_a_new_target_and_errors_say_what_to_do(pipeline_copy, capsys):
    target = "COUNT(transactions.*, 0, 3, days) = 0"
    query = f"PREDICT {target} FOR EACH customers.customer_id"
    assert cli.main(["predict", query]) == 2  # no task predicts it: --train is the way
    assert "(--train declares and trains a task for it)" in capsys.readouterr().err

    assert cli.main(["predict", "--train", query, "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"declared pq_count_all_0_3d_eq_0: {target} for each customer (features and rows of"
        " churn_30d); training set query_tasks.pq_count_all_0_3d_eq_0_training_set:"
    )
    assert lines[1].startswith("trained pq_count_all_0_3d_eq_0 version 1, champion: ROC AUC")
    assert lines[2].startswith("pq_count_all_0_3d_eq_0 (batch, day 2025-04-14):")
    assert "probability" in lines[3] and len(lines) == 8  # header, 3 rows, "... more"

    # a target no transaction ever meets: one class, training says which window
    never = (
        "PREDICT MAX(transactions.amount, 0, 1, hours) > 1000000000 FOR EACH customers.customer_id"
    )
    assert cli.main(["predict", "--train", never]) == 1
    assert "holds only label 0" in capsys.readouterr().err
