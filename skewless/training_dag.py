"""The Airflow DAG that trains one model, built for each declared task by dags/train.py.

Every training DAG is the same wiring around models.training.train; this builds it once. Airflow
is imported inside the function so that importing skewless never needs it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from skewless.orchestration import DEFAULT_ARGS, FEATURES_URI, MODEL_URIS
from skewless.tasks import get_task

DOC = """
### train_{name}

{description}

Trains the `{name}` model ({serving}) on the features as of the day carried by the features asset
(only labels known by then), evaluates it on a holdout after a gap, logs everything to MLflow and
registers a new version. The alias `champion` moves only if the new version beats the champion on
the same holdout (models/config.yaml). Emits the model asset that `batch_score` waits for.
"""


def training_dag(task: str):
    """The `train_<task>` DAG: scheduled by the features asset, emits the model asset."""
    spec = get_task(task)
    task = spec.name
    doc_md = DOC.format(name=spec.name, description=spec.description, serving=spec.serving)
    from airflow.sdk import Asset, Param, dag
    from airflow.sdk import task as airflow_task

    features, model = Asset(FEATURES_URI), Asset(MODEL_URIS[task])

    @dag(
        dag_id=f"train_{task}",
        schedule=[features],
        start_date=datetime(2025, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["skewless", "training", "mlflow"],
        doc_md=doc_md,
        default_args=DEFAULT_ARGS,
        params={
            "day": Param("", type="string", description="YYYY-MM-DD; empty: from the asset event")
        },
    )
    def train_model():
        @airflow_task(outlets=[model])
        def train(
            params=None, triggering_asset_events=None, data_interval_start=None, outlet_events=None
        ):
            from models.training import train as train_task
            from skewless.orchestration import cutoff, run_day

            day = run_day(params, triggering_asset_events, data_interval_start)
            result = train_task(task, as_of=cutoff(day))
            outlet_events[model].extra = {
                "day": day.isoformat(),
                "model_version": str(result["model_version"]),
                "promoted": bool(result["promoted"]),
            }
            return result

        train()

    return train_model()
