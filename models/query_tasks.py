"""Tasks declared by predictive queries (``skewless predict --train``): a new target, trained and
registered like any task.

``PREDICT SUM(transactions.amount, 0, 7, days) > 100 FOR EACH customers.customer_id`` with
``--train``, when no task predicts that target, declares one (``skewless.pql.declare_task``): the
features and training rows of the entity's declared batch task (churn_30d for customers), the
model configuration of that task's ``models/config.yaml`` block, and the target as its label.

- ``training_set_sql``: the label, generated from the target's aggregation over the entity's
  transactions in [t + start, t + end) after each training row's time t (a window frame over
  the entity's transactions and rows in time order); rows whose window ends after the last
  transaction are left out, as the declared batch tasks' training sets do. Of no transactions, a
  count and a sum are 0; a mean, minimum or maximum has no value and the label is false (as in a
  query's WHERE).
- ``train``: builds the training set in the warehouse (``query_tasks.<name>_training_set``),
  trains and registers the model (MLflow registered model ``<name>``, alias champion when it
  wins), and tags the registered model with the target (``skewless.query``) and entity.
- ``known``: the tasks of the registered models so tagged, so a later query of the same target,
  or of the task's name, finds its champion without training again.

The DAGs do not schedule these tasks: to score one every night, declare it in the declaration.
"""

from __future__ import annotations

import time
from datetime import timedelta

from skewless import pql
from skewless.dbtgen_sets import STAGED, active_feature
from skewless.vocabulary import Task

QUERY_TAG = "skewless.query"  # the registered model's tag holding the target
ENTITY_TAG = "skewless.entity"

_COUNTED = ("COUNT", "SUM")  # of no transactions: 0; the others have no value


def _interval(value: timedelta) -> str:
    return f"interval '{value // timedelta(microseconds=1)} microseconds'"


def target_of(task: Task) -> pql.Target:
    """The target a task declared by a query was declared from, parsed again."""
    if task.query is None:
        raise ValueError(f"task {task.name!r} was not declared by a predictive query")
    table = f"{task.entity.name}s"
    query = f"PREDICT {task.query} FOR EACH {table}.{task.entity.join_key}"
    return pql.parse(query, declare_new=True).target


def training_set_sql(task: Task, target: pql.Target | None = None) -> str:
    """The ``select`` of the task's training set: the rows of its daily group whose entity was
    active within ``active_within`` and whose target window ends by the last transaction, with
    the label ``target`` (default: the task's own) over the window after each row's time."""
    target = target or target_of(task)
    (group,) = task.service.groups
    key, agg = group.entity.join_key, target.aggregation
    active = active_feature(task, group)
    value = "1" if agg.column is None else agg.column
    function = "count" if agg.column is None else agg.function.lower()
    measured = f"{function}(v) over (partition by entity_id order by event_timestamp range between {_interval(agg.start)} following and {_interval(agg.end - timedelta(microseconds=1))} following)"  # noqa: E501
    if agg.function in _COUNTED:
        label = f"coalesce(measured, 0) {target.op} {target.value!r}"
    else:
        label = f"coalesce(measured {target.op} {target.value!r}, false)"
    return f"""with observed as (
    select max(event_timestamp) as last_event_at from {STAGED}
),

kept as (
    select daily.*
    from {group.name} as daily
    cross join observed
    where
        daily.{active} > 0
        and daily.event_timestamp + {_interval(agg.end)} <= observed.last_event_at
),

stream as (
    -- the training rows (v null) and the transactions of their entities, in time order
    select {key} as entity_id, event_timestamp, true as is_row, null::double as v from kept
    union all
    select {key}, event_timestamp, false, {value}::double
    from {STAGED}
    where {key} in (select {key} from kept)
),

labels as (
    select entity_id, event_timestamp, {measured} as measured, is_row
    from stream
)

select kept.*, {label} as {task.label}
from kept
inner join labels
    on labels.is_row
    and labels.entity_id = kept.{key}
    and labels.event_timestamp = kept.event_timestamp
"""


def build_training_set(cfg, task: Task) -> dict:
    """Creates (or replaces) the task's training set in the warehouse; its rows and positives."""
    from skewless import warehouse

    started = time.perf_counter()
    schema = task.training_set.partition(".")[0]
    con = warehouse.connect(cfg.warehouse_path)
    try:
        con.execute(f"create schema if not exists {schema}")
        con.execute(f"create or replace table {task.training_set} as {training_set_sql(task)}")
        rows, positives = con.execute(
            f"select count(*), coalesce(sum({task.label}::int), 0) from {task.training_set}"
        ).fetchone()
    finally:
        con.close()
    return {
        "table": task.training_set,
        "rows": rows,
        "positives": positives,
        "seconds": round(time.perf_counter() - started, 3),
    }


def train(cfg, task: Task, **windows) -> dict:
    """Builds the training set, trains and registers the model (``models.training.train``, the
    windows as there) and tags the registered model with the target. A task declared by a query
    must be declared for this process first (``skewless.tasks.declare``, as ``skewless.predict``
    does): training and scoring take it by name."""
    from models import registry, training

    built = build_training_set(cfg, task) if task.query is not None else None
    result = training.train(task.name, cfg=cfg, **windows)
    if task.query is not None and result.get("model_version") is not None:
        _, client = registry.connect(cfg)
        name = result["model_name"]
        client.set_registered_model_tag(name, QUERY_TAG, task.query)
        client.set_registered_model_tag(name, ENTITY_TAG, task.entity.name)
        client.update_registered_model(name, description=task.description)
    return {"training_set": built, "training": result}


def known(cfg) -> tuple[Task, ...]:
    """The tasks declared by earlier queries: registered models tagged with their target (and
    a target the declaration now predicts itself is the declaration's)."""
    from models import registry

    _, client = registry.connect(cfg)
    found, models, token = [], [], None
    while True:  # every page of the registry's answer
        page = client.search_registered_models(
            f"name LIKE '{pql.QUERY_TASK_PREFIX}%'", max_results=100, page_token=token
        )
        models += list(page)
        token = page.token
        if not token:
            break
    for model in models:
        target, entity = model.tags.get(QUERY_TAG), model.tags.get(ENTITY_TAG)
        table = pql.tables().get(f"{entity}s")
        if target is None or table is None:
            continue
        try:
            query = pql.parse(
                f"PREDICT {target} FOR EACH {table.name}.{table.key}", declare_new=True
            )
        except pql.QueryError:  # a target the declaration no longer allows
            continue
        if query.new and query.task.name == model.name:
            found.append(query.task)
    return tuple(found)
