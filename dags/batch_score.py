"""
### batch_score

Nightly batch scoring for the day carried by the model assets (or the `day` param), with the
`champion` of each task declared in skewless/features.py, one Airflow task `score_<task>` each:

- a realtime task (**fraud**) scores every event of the day → its predictions table
  (`predictions.fraud_scores`, that day's partition replaced);
- a batch task (**churn_30d**) scores every entity as of midnight after the day → its predictions
  table (`predictions.churn_scores`) and Redis (`skewless:churn_30d:<customer_id>`) for the
  sidecar's key lookup.

Runs once every model asset has an event; re-running a day leaves identical tables.
"""

from __future__ import annotations

import functools
import operator
from datetime import UTC, datetime

from airflow.sdk import Asset, Param, chain, dag, task

from skewless.orchestration import DEFAULT_ARGS, MODEL_URIS, PREDICTIONS_URI, WAREHOUSE_POOL
from skewless.tasks import TASKS

MODELS = [Asset(MODEL_URIS[name]) for name in TASKS]
PREDICTIONS = Asset(PREDICTIONS_URI)


@dag(
    dag_id="batch_score",
    schedule=functools.reduce(operator.and_, MODELS),  # every model asset
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["skewless", "scoring"],
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
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
    def score(name: str, day: str) -> dict:
        from datetime import date

        from models.batch_score import score as score_task

        return score_task(name, date.fromisoformat(day))

    @task(outlets=[PREDICTIONS])
    def predictions(day: str, outlet_events=None) -> str:
        """Every task scored the day: the predictions asset carries it to skew_report."""
        outlet_events[PREDICTIONS].extra = {"day": day}
        return day

    day = resolve_day()
    # one at a time (the warehouse pool has one slot), in declaration order
    steps = [score.override(task_id=f"score_{name}")(name, day) for name in TASKS]
    chain(*steps, predictions(day))


batch_score()
