"""The training DAGs: one Airflow DAG `train_<task>` per task declared in skewless/features.py.

Each trains its model on the features as of the day carried by the features asset (only labels
known by then), evaluates it on a holdout after a gap, logs everything to MLflow and registers a
new version; the alias `champion` moves only if the new version beats it on the same holdout
(models/config.yaml). Each emits its model asset; `batch_score` waits for all of them.
"""

from skewless.tasks import TASKS
from skewless.training_dag import training_dag

for _task in TASKS.values():
    globals()[f"train_{_task.name}"] = training_dag(_task.name)
