"""One more entity and one more task, declared in a file of one's own, flow everywhere.

``declaration.py`` declares a device entity, its daily feature group and service, and a batch task
predicting that a device goes quiet; ``model_config.yaml`` adds the task's model section. With
SKEWLESS_DECLARATION pointing at the file (and a copy of the dbt project to write into), the real
pipeline gets, with no other edit: the raw column and the dbt staging, feature, export and
training-set models (dbtgen), the Feast entity, view and service (feast apply), the training DAG
and a batch_score task (Airflow's DagBag), a registered model (MLflow), batch scores in the
warehouse and Redis, and the sidecar's lookup route with its OpenAPI path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skewless.settings import PROJECT_ROOT
from tests.helpers import PLACEMENT_VARS, fresh_redis_db

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def extended(tmp_path_factory, redis_url):
    root = tmp_path_factory.mktemp("extension")
    dbt_copy = root / "dbt_project"
    shutil.copytree(
        PROJECT_ROOT / "dbt_project", dbt_copy, ignore=shutil.ignore_patterns("target", "logs")
    )
    env = {k: v for k, v in os.environ.items() if k not in PLACEMENT_VARS}
    env = {k: v for k, v in env.items() if not k.startswith(("SKEWLESS_", "PROMETHEUS_"))}
    env.update(
        SKEWLESS_VAR_DIR=str(root / "var"),
        SKEWLESS_DBT_PROJECT=str(dbt_copy),
        SKEWLESS_DECLARATION=str(HERE / "declaration.py"),
        SKEWLESS_MODEL_CONFIG=str(HERE / "model_config.yaml"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        DO_NOT_TRACK="1",
    )
    url = fresh_redis_db(redis_url)
    done = subprocess.run(
        [sys.executable, str(HERE / "run.py"), url],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_declaration_is_extended(extended):
    assert "device_daily_activity" in extended["groups"]
    assert list(extended["tasks"]) == ["fraud", "churn_30d", "device_dormant_7d"]
    assert extended["imported"] > 0


def test_dbt_gets_the_models_and_builds_them(extended):
    assert extended["dbtgen"] == [
        "models/exports/feast_device_daily_activity.sql",
        "models/marts/features/_device_daily_activity.yml",
        "models/marts/features/device_daily_activity.sql",
        "models/marts/training/_training_sets.yml",
        "models/marts/training/device_dormant_7d_training_set.sql",
        "models/staging/stg_raw__transactions.sql",
        "models/staging/stg_raw__transactions.yml",
    ]
    assert extended["tables"]["device_daily_activity"] > 0
    assert extended["tables"]["device_dormant_7d_training_set"] > 0
    assert set(extended["labels"]) == {"0", "1"}, extended["labels"]


def test_feast_gets_the_entity_view_and_service(extended):
    feast = extended["feast"]
    assert "device" in feast["entities"]
    assert "device_daily_activity" in feast["views"]
    assert "device_v1" in feast["services"]


def test_airflow_gets_a_training_dag_and_a_scoring_task(extended):
    assert extended["dag_import_errors"] == {}
    assert "train_device_dormant_7d" in extended["dags"]
    assert "score_device_dormant_7d" in extended["batch_score_tasks"]


def test_the_model_is_trained_scored_and_served(extended):
    assert extended["trained"] == {"version": "1", "promoted": True}
    assert extended["scored"]["rows"] > 0
    assert extended["scored"]["keys"] == extended["scored"]["rows"]
    assert "/v1/devices/<device_id>/dormant" in extended["routes"]
    assert "/v1/fraud/score" in extended["routes"]  # the realtime task's route, as before
    lookup = extended["lookup"]
    assert set(lookup) == {"device_id", "dormant_probability", "score_date", "model"}
    assert lookup["device_id"] == "d0001" and 0 <= lookup["dormant_probability"] <= 1
    assert lookup["model"] == {"name": "device_dormant_7d", "version": "1"}
    assert extended["unknown"] == 404
    assert "/v1/devices/{device_id}/dormant" in extended["openapi_paths"]
