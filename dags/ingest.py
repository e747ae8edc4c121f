"""
### ingest

Lands one day of raw transactions from the drop folder (`var/drop/transactions_YYYY-MM-DD.*`, filled
by `skewless generate --stage` or by an upstream system; columns mapped by `SKEWLESS_DROP_MAP`) into
`raw.transactions`; failing rows go to `raw.transactions_quarantine` with a reason. Idempotent: a
re-run for the same day rewrites that day's partition. Emits the raw-transactions asset (with the
day) that starts `build_features`.

A day whose file has not landed yet is waited for (`wait_for_data`, every 5 minutes, the worker
slot free in between). If it has not landed within 6 hours the run is skipped, not failed: its log
names the file it expected.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from skewless.orchestration import DEFAULT_ARGS, RAW_URI, WAREHOUSE_POOL

RAW = Asset(RAW_URI)


@dag(
    dag_id="ingest",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    # a day triggered by hand runs while a scheduled day's sensor still waits for its file
    # (land queues on the one-slot warehouse pool either way)
    max_active_runs=4,
    tags=["skewless", "raw"],
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    params={"day": Param("", type="string", description="YYYY-MM-DD; empty: the data interval")},
)
def ingest():
    @task.sensor(
        poke_interval=timedelta(minutes=5),
        timeout=timedelta(hours=6),
        mode="reschedule",
        soft_fail=True,
        doc_md="Waits for the day's drop file; skipped (with the expected path in the log) "
        "when it has not landed within 6 hours.",
    )
    def wait_for_data(params=None, data_interval_start=None):
        from airflow.sdk import PokeReturnValue

        from skewless.ingest import drop_files, expected_file
        from skewless.orchestration import run_day

        day = run_day(params, None, data_interval_start)
        if not drop_files(day):
            print(f"waiting for the data of {day}: {expected_file(day)} (or .csv)")
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=day.isoformat())

    @task(pool=WAREHOUSE_POOL, outlets=[RAW])
    def land(day: str, outlet_events=None) -> dict:
        from datetime import date

        from skewless.ingest import land_day

        summary = land_day(date.fromisoformat(day))
        outlet_events[RAW].extra = {"day": day, **summary}
        return summary

    land(wait_for_data())


ingest()
