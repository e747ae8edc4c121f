"""Every DAG imports cleanly, follows the house rules, and is wired by Assets."""

from __future__ import annotations

import pytest

from skewless import dbtgen_arrival, orchestration, pipeline, settings, tasks
from skewless.dbtgen_sets import arrival_training_set
from skewless.features import GROUPS

EXPECTED = {
    "ingest",
    "build_features",
    "train_fraud",
    "train_churn_30d",
    "batch_score",
    "skew_report",
}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    var_dir = tmp_path_factory.mktemp("var")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKEWLESS_VAR_DIR", str(var_dir))
        cfg = settings.load()
        pipeline.dbt(cfg, ["parse"])  # Cosmos renders build_features from this manifest
        yield DagBag(dag_folder=str(settings.PROJECT_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_house_rules(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert "skewless" in dag.tags
    assert dag.catchup is False
    assert dag.start_date.tzinfo is not None
    assert dag.doc_md
    assert all(t.retries is not None for t in dag.tasks)
    assert {t.owner for t in dag.tasks} == {"ml-platform"}
    assert "day" in dag.params


def test_ingest_waits_for_its_data_and_skips_rather_than_fails_without_it(dagbag):
    dag = dagbag.get_dag("ingest")
    sensor = dag.get_task("wait_for_data")
    assert sensor.mode == "reschedule" and sensor.soft_fail
    assert sensor.timeout == 6 * 3600 and sensor.poke_interval == 300
    assert dag.get_task("land").upstream_task_ids == {"wait_for_data"}


def test_dags_are_chained_by_assets(dagbag):
    def outlets(dag_id):
        return {a.uri for t in dagbag.get_dag(dag_id).tasks for a in t.outlets}

    def flatten(condition):
        if hasattr(condition, "objects"):  # AssetAll / AssetAny
            return {uri for obj in condition.objects for uri in flatten(obj)}
        return {condition.uri}

    def inlets(dag_id):
        return flatten(dagbag.get_dag(dag_id).timetable.asset_condition)

    assert orchestration.RAW_URI in outlets("ingest") & inlets("build_features")
    assert orchestration.FEATURES_URI in outlets("build_features") & inlets("train_fraud")
    assert orchestration.FEATURES_URI in inlets("train_churn_30d")
    assert set(orchestration.MODEL_URIS.values()) == inlets("batch_score")
    assert orchestration.MODEL_URIS["fraud"] in outlets("train_fraud")
    assert {orchestration.PREDICTIONS_URI} == outlets("batch_score") == inlets("skew_report")


def test_dbt_runs_in_cosmos_tasks_on_the_warehouse_pool(dagbag):
    dag = dagbag.get_dag("build_features")
    dbt_tasks = [t for t in dag.tasks if t.task_id.startswith("dbt.")]
    models = ["stg_raw__transactions", "fraud_training_set", "churn_training_set"]
    models += [name for g in GROUPS for name in (g.name, f"feast_{g.name}")]
    # the arrival-aware models of the transaction-grain groups and of the realtime task's set
    models += [dbtgen_arrival.model_name(g.name) for g in dbtgen_arrival.groups()]
    models += [arrival_training_set(t) for t in tasks.realtime()]
    # one `dbt build` task per model (its tests and unit tests included), rendered from the manifest
    assert {t.task_id for t in dbt_tasks} == {f"dbt.{m}_model_build" for m in models}
    assert all(t.pool == orchestration.WAREHOUSE_POOL for t in dbt_tasks)


def test_skew_report_maps_one_report_per_mode_on_the_warehouse_pool(dagbag):
    dag = dagbag.get_dag("skew_report")
    tasks = {"resolve_day", "flush_log", "served_modes", "report", "gate"}
    assert {t.task_id for t in dag.tasks} == tasks
    report = dag.get_task("report")
    assert report.is_mapped  # expanded over the modes found in the day's log
    for task_id in ("flush_log", "served_modes", "report"):
        assert dag.get_task(task_id).pool == orchestration.WAREHOUSE_POOL
    assert dag.get_task("flush_log").downstream_task_ids == {"served_modes"}
    # the gate judges every written report, once, and is not retried
    assert report.downstream_task_ids == {"gate"} and dag.get_task("gate").retries == 0


def test_the_sensor_names_the_file_it_waits_for_and_passes_the_day_on(dagbag, var_dir, capsys):
    poke = dagbag.get_dag("ingest").get_task("wait_for_data").python_callable
    waiting = poke(params={"day": "2024-01-01"}, data_interval_start=None)
    assert not waiting.is_done
    assert "drop/transactions_2024-01-01.parquet (or .csv)" in capsys.readouterr().out
    (var_dir / "drop").mkdir()
    (var_dir / "drop" / "transactions_2024-01-01.csv").write_text("transaction_id\n")
    landed = poke(params={"day": "2024-01-01"}, data_interval_start=None)
    assert landed.is_done and landed.xcom_value == "2024-01-01"
