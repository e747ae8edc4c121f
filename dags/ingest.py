"""
### ingest

Lands one day of raw transactions from the drop folder (`var/drop/transactions_YYYY-MM-DD.*`, filled
by `skewless generate --stage` or by an upstream system) into `raw.transactions`; failing rows go to
`raw.transactions_quarantine` with a reason. Idempotent: a re-run for the same day rewrites that day's
partition. Emits the raw-transactions asset (with the day) that starts `build_features`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from skewless.orchestration import RAW_URI, WAREHOUSE_POOL

RAW = Asset(RAW_URI)


@dag(
    dag_id="ingest",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["skewless", "raw"],
    doc_md=__doc__,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    params={"day": Param("", type="string", description="YYYY-MM-DD; empty: the data interval")},
)
def ingest():
    @task(pool=WAREHOUSE_POOL, outlets=[RAW])
    def land(params=None, data_interval_start=None, outlet_events=None) -> dict:
        from skewless.ingest import land_day
        from skewless.orchestration import run_day

        day = run_day(params, None, data_interval_start)
        summary = land_day(day)
        outlet_events[RAW].extra = {"day": day.isoformat(), **summary}
        return summary

    land()


ingest()
