"""
### build_features

For the day carried by the raw-transactions asset (or the `day` param):

1. **validate_raw** — Great Expectations suite on the day's raw rows, plus the share of the day's
   rows that were quarantined; a failing gate stops the run with a readable report (the rows stay in
   `raw.transactions` / `raw.transactions_quarantine`: nothing is lost).
2. **dbt** — the dbt project rendered by Cosmos from its manifest (`skewless dbt parse`), built with
   the batch cutoff = midnight after the day.
3. **validate_features** — suites derived from the feature declaration, on the day's feature rows.
4. **feast_apply** and **materialize** — incremental over the day: the snapshot rows at the cutoff
   (one per entity) into Redis.

Emits the features asset that starts the training DAGs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode, TestBehavior, TestIndirectSelection

from skewless import settings
from skewless.orchestration import (
    DEFAULT_ARGS,
    FEATURES_URI,
    RAW_URI,
    WAREHOUSE_POOL,
    manifest_path,
)
from skewless.pipeline import dbt_environment

RAW = Asset(RAW_URI)
FEATURES = Asset(FEATURES_URI)
_cfg = settings.load()
_CUTOFF = "{{ ti.xcom_pull(task_ids='validate_raw')['cutoff'] }}"


@dag(
    dag_id="build_features",
    schedule=[RAW],
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["skewless", "features", "dbt", "feast"],
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    params={"day": Param("", type="string", description="YYYY-MM-DD; empty: from the asset event")},
)
def build_features():
    @task(retries=0)
    def validate_raw(params=None, triggering_asset_events=None, data_interval_start=None) -> dict:
        from skewless import gates
        from skewless.orchestration import cutoff, run_day

        day = run_day(params, triggering_asset_events, data_interval_start)
        gates.check_raw_day(day)
        return {"day": day.isoformat(), "cutoff": cutoff(day).isoformat(sep=" ")}

    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(
            dbt_project_path=_cfg.dbt_project_dir,
            manifest_path=manifest_path(_cfg),
            env_vars=dbt_environment(_cfg),
        ),
        profile_config=ProfileConfig(
            profile_name="skewless",
            target_name=_cfg.dbt_target,
            profiles_yml_filepath=_cfg.dbt_project_dir / "profiles.yml",
        ),
        # cautious: a model's build runs only the tests whose every parent is built by then
        execution_config=ExecutionConfig(
            invocation_mode=InvocationMode.DBT_RUNNER,
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.BUILD
        ),
        operator_args={
            "pool": WAREHOUSE_POOL,
            "vars": {
                "features_as_of": _CUTOFF,
                "label_delay_seconds": int(_cfg.label_delay.total_seconds()),
            },
            "install_deps": False,
            "retries": 0,  # a failing model or test fails the same way again
        },
    )

    @task(retries=0)
    def validate_features(checked: dict) -> dict:
        from datetime import date

        from skewless import gates

        gates.check_features_day(date.fromisoformat(checked["day"]))
        return checked

    @task
    def feast_apply(checked: dict) -> dict:
        from skewless import pipeline, redis_server

        cfg = settings.load()
        pipeline.feast_apply(cfg, redis_server.resolve_url(cfg.redis_url, cfg.redis_dir))
        return checked

    @task(outlets=[FEATURES])
    def materialize(checked: dict, outlet_events=None) -> dict:
        from skewless import pipeline

        # incremental: the day's rows and the snapshot at the cutoff (every entity has one there)
        end = datetime.fromisoformat(checked["cutoff"])
        summary = pipeline.materialize(settings.load(), start=end - timedelta(days=1), end=end)
        outlet_events[FEATURES].extra = {"day": checked["day"], "cutoff": checked["cutoff"]}
        return summary

    checked = validate_raw()
    validated = validate_features(checked)
    checked >> dbt >> validated
    materialize(feast_apply(validated))


build_features()
