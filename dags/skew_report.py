"""
### skew_report

The skew report of the day carried by the predictions asset (or the `day`
param): what the realtime sidecar served that day against the offline truth dbt recomputed for the
same transactions.

1. **flush_log** — the sidecar's serving log (Redis Stream) into `serving.serving_log`; entries
   already there are skipped, so a re-run inserts nothing twice.
2. **served_modes** — the serving modes with logged requests on the day (none: nothing to report).
3. **report** — one mapped task per mode: the report as `var/reports/skew_<mode>_<date>.json` and
   `.html` (replaced on a re-run) and a run in the MLflow experiment `skew_report`, with the
   features past their skew thresholds (`monitoring/skew_thresholds.yaml`, overrides per feature in
   the declaration) listed as anomalies.
4. **gate** — fails, once every report is written, when a report has a gating anomaly; its log
   names the modes and holds the table of anomalies.

Scheduled by the predictions asset, the end of the nightly batch loop: by then `build_features` has
rebuilt the day's offline truth with every event landed for it, and no other DAG of the loop is
writing or reading the warehouse, so the flush (a writer) never waits on a training task's read.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Asset, Param, dag, task

from skewless.orchestration import DEFAULT_ARGS, PREDICTIONS_URI, WAREHOUSE_POOL

PREDICTIONS = Asset(PREDICTIONS_URI)


@dag(
    dag_id="skew_report",
    schedule=[PREDICTIONS],
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["skewless", "serving", "skew", "mlflow"],
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    params={"day": Param("", type="string", description="YYYY-MM-DD; empty: from the asset event")},
)
def skew_report():
    @task
    def resolve_day(params=None, triggering_asset_events=None, data_interval_start=None) -> str:
        from skewless.orchestration import run_day

        return run_day(params, triggering_asset_events, data_interval_start).isoformat()

    @task(pool=WAREHOUSE_POOL)
    def flush_log() -> dict:
        from monitoring.flush import flush_log as flush

        return flush()

    @task(pool=WAREHOUSE_POOL)
    def served_modes(day: str) -> list[str]:
        from datetime import date

        from monitoring.skew import served_modes as modes

        return modes(date.fromisoformat(day))

    @task(pool=WAREHOUSE_POOL)
    def report(mode: str, day: str) -> dict:
        from datetime import date

        from monitoring.skew_publish import report_day

        return report_day(date.fromisoformat(day), mode)

    @task(retries=0)
    def gate(summaries: list[dict]) -> dict:
        from monitoring.skew_gate import check

        return check(list(summaries))

    day = resolve_day()
    modes = served_modes(day)
    flush_log() >> modes
    gate(report.partial(day=day).expand(mode=modes))


skew_report()
