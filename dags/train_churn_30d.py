"""
### train_churn_30d

Trains the `churn_30d` model on the features as of the day carried by the features asset (only labels
known by then), evaluates it on a holdout after a gap, logs everything to MLflow and registers a new
version. The alias `champion` moves only if the new version beats the champion on the same holdout
(models/config.yaml). Emits the model asset that starts `batch_score`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from skewless.orchestration import FEATURES_URI, MODEL_URIS

FEATURES = Asset(FEATURES_URI)
MODEL = Asset(MODEL_URIS["churn_30d"])


@dag(
    dag_id="train_churn_30d",
    schedule=[FEATURES],
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["skewless", "training", "mlflow"],
    doc_md=__doc__,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    params={"day": Param("", type="string", description="YYYY-MM-DD; empty: from the asset event")},
)
def train_churn_30d():
    @task(outlets=[MODEL])
    def train(
        params=None, triggering_asset_events=None, data_interval_start=None, outlet_events=None
    ):
        from models.training import train as train_model
        from skewless.orchestration import cutoff, run_day

        day = run_day(params, triggering_asset_events, data_interval_start)
        result = train_model("churn_30d", as_of=cutoff(day))
        outlet_events[MODEL].extra = {
            "day": day.isoformat(),
            "model_version": str(result["model_version"]),
            "promoted": bool(result["promoted"]),
        }
        return result

    train()


train_churn_30d()
