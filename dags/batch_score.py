"""
### batch_score

Nightly batch scoring for the day carried by the model assets (or the `day` param), with the
`champion` of each model:

- **fraud** — every transaction of the day → `predictions.fraud_scores` (that day's partition
  replaced);
- **churn_30d** — every customer, as of midnight after the day → `predictions.churn_scores` and
  Redis (`skewless:churn_30d:<customer_id>`) for the sidecar's key lookup.

Re-running a day leaves identical tables.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from skewless.orchestration import MODEL_URIS, PREDICTIONS_URI, WAREHOUSE_POOL

MODELS = [Asset(uri) for uri in MODEL_URIS.values()]
PREDICTIONS = Asset(PREDICTIONS_URI)


@dag(
    dag_id="batch_score",
    schedule=MODELS[0] & MODELS[1],
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["skewless", "scoring"],
    doc_md=__doc__,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    params={
        "day": Param("", type="string", description="YYYY-MM-DD; empty: from the asset events")
    },
)
def batch_score():
    @task
    def resolve_day(params=None, triggering_asset_events=None, data_interval_start=None) -> str:
        from skewless.orchestration import run_day

        return run_day(params, triggering_asset_events, data_interval_start).isoformat()

    @task(pool=WAREHOUSE_POOL)
    def score_fraud(day: str) -> dict:
        from datetime import date

        from models.batch_score import score_fraud as score

        return score(date.fromisoformat(day))

    @task(pool=WAREHOUSE_POOL, outlets=[PREDICTIONS])
    def score_churn(day: str, outlet_events=None) -> dict:
        from datetime import date

        from models.batch_score import score_churn as score

        summary = score(date.fromisoformat(day))
        outlet_events[PREDICTIONS].extra = {"day": day}
        return summary

    day = resolve_day()
    score_fraud(day) >> score_churn(day)


batch_score()
