"""
### train_churn_30d

Trains the `churn_30d` model on the features as of the day carried by the features asset (only labels
known by then), evaluates it on a holdout after a gap, logs everything to MLflow and registers a new
version. The alias `champion` moves only if the new version beats the champion on the same holdout
(models/config.yaml). Emits the model asset that starts `batch_score`.
"""

from skewless.training_dag import training_dag  # an Airflow DAG, wired once for both models

train_churn_30d = training_dag("churn_30d", doc_md=__doc__)
