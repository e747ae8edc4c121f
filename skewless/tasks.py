"""The declared prediction tasks: what each model predicts, from which features, and how it serves.

A task is one registered model. Everything that handles models iterates ``TASKS``: the training
DAGs (``train_<name>``), ``batch_score``'s schedule and tasks, the CLI's choices, batch scoring,
the sidecar's routes and the skew report. Adding a model is an entry here, its feature service in
``skewless/features.py``, its block in ``models/config.yaml`` and its dbt training set.

Two ways to serve, chosen per task:

- ``realtime``: scored per event when it happens, by the sidecar (``POST route``) from features in
  one of the serving modes, and scored again per event by the nightly batch; its served requests
  are logged and compared with the offline truth by the skew report.
- ``batch``: scored per entity every night as of midnight; the scores land in the predictions table
  and in Redis hashes ``skewless:<name>:<entity id>``, which the sidecar answers by key lookup
  (``GET route``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from skewless.features import FEATURE_SERVICES, Entity, FeatureService, Grain

PREDICTIONS_SCHEMA = "predictions"


class Serving(StrEnum):
    REALTIME = "realtime"
    BATCH = "batch"


@dataclass(frozen=True)
class Task:
    """One model: its features, labels, keys and how its predictions are served."""

    name: str  # registered model name, models/config.yaml key, CLI choice, DAG train_<name>
    service: FeatureService
    description: str
    training_set: str  # dbt model with the labels and entity keys
    label: str  # 0/1 column of the training set
    # When a row's label is known: the training set's ``label_timestamp`` column (None here), or
    # this long after the row's time (the label looks that far ahead).
    label_horizon: timedelta | None
    serving: Serving
    ids: tuple[str, ...]  # entity / row ids, in the order of ``keys``
    merge_keys: tuple[str, ...]  # identify one training row (to join Feast's answer back)
    card: str  # the id investigators review: card precision@k ranks these per day
    score_column: str  # the probability's column in the predictions table and responses
    predictions_table: str
    route: str  # the sidecar's route: POST (realtime) or GET by entity id (batch)
    request_features: bool = False  # the request-time features (REQUEST_FEATURES) too
    extra_columns: tuple[str, ...] = ()  # training-set columns kept beside the keys
    aliases: tuple[str, ...] = ()  # other names accepted by the CLI

    def __post_init__(self):
        grains = {g.grain for g in self.service.groups}
        expected = Grain.TRANSACTION if self.serving is Serving.REALTIME else Grain.DAILY
        if grains != {expected}:
            raise ValueError(
                f"task {self.name!r}: {self.serving} tasks need {expected} feature groups, "
                f"service {self.service.name!r} has {sorted(grains)}"
            )
        if self.serving is Serving.BATCH and self.label_horizon is None:
            raise ValueError(f"task {self.name!r}: a batch task needs a label_horizon")
        if self.serving is Serving.BATCH and len(self.service.groups) != 1:
            raise ValueError(f"task {self.name!r}: a batch task scores from one daily group")
        if self.serving is Serving.BATCH and f"<{self.entity.join_key}>" not in self.route:
            raise ValueError(
                f"task {self.name!r}: route {self.route!r} must hold <{self.entity.join_key}>"
            )

    @property
    def realtime(self) -> bool:
        return self.serving is Serving.REALTIME

    @property
    def entity(self) -> Entity:
        """What one batch prediction is about: the entity of the task's daily group."""
        return self.service.groups[0].entity

    @property
    def scores_key_prefix(self) -> str:
        """Redis hash per entity holding a batch task's latest score (``<prefix><entity id>``)."""
        return f"skewless:{self.name}:"

    @property
    def group_features(self) -> list[str]:
        return [name for g in self.service.groups for name in g.feature_names]


def _service(name: str) -> FeatureService:
    return next(s for s in FEATURE_SERVICES if s.name == name)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="fraud",
            service=_service("fraud_v1"),
            description="Fraud at authorization: the probability that a transaction is fraud.",
            training_set="fraud_training_set",
            label="is_fraud",
            label_horizon=None,
            serving=Serving.REALTIME,
            ids=("transaction_id", "customer_id", "merchant_id"),
            merge_keys=("transaction_id",),
            card="customer_id",
            score_column="fraud_probability",
            predictions_table=f"{PREDICTIONS_SCHEMA}.fraud_scores",
            route="/v1/fraud/score",
            request_features=True,
            extra_columns=("label_timestamp",),
        ),
        Task(
            name="churn_30d",
            service=_service("churn_v1"),
            description="Churn: the probability that a customer makes no transaction in 30 days.",
            training_set="churn_training_set",
            label="is_churned_30d",
            label_horizon=timedelta(days=30),  # dbt var churn_horizon_days
            serving=Serving.BATCH,
            ids=("customer_id",),
            merge_keys=("customer_id", "event_timestamp"),
            card="customer_id",
            score_column="churn_probability",
            predictions_table=f"{PREDICTIONS_SCHEMA}.churn_scores",
            route="/v1/customers/<customer_id>/churn",
            aliases=("churn",),
        ),
    )
}


def names() -> list[str]:
    """Every task name and alias (the CLI's choices)."""
    return [name for task in TASKS.values() for name in (task.name, *task.aliases)]


def get_task(task: str | Task) -> Task:
    """A task by name or alias; ValueError naming the choices otherwise."""
    if isinstance(task, Task):
        return task
    for candidate in TASKS.values():
        if task == candidate.name or task in candidate.aliases:
            return candidate
    raise ValueError(f"task={task!r}: expected one of {names()}")


def realtime() -> list[Task]:
    return [t for t in TASKS.values() if t.realtime]


def batch() -> list[Task]:
    return [t for t in TASKS.values() if not t.realtime]


def realtime_task() -> Task:
    """The task the sidecar scores per request, its stream feeds and the skew report measures."""
    found = realtime()
    if len(found) != 1:
        raise ValueError(
            f"the sidecar serves one realtime task; declared: {[t.name for t in found]}"
        )
    return found[0]
