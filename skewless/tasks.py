"""The declared prediction tasks (``TASKS`` in skewless/features.py), looked up by name or kind.

A task is one registered model. Everything that handles models iterates ``TASKS``: the training
DAGs (``train_<name>``), ``batch_score``'s schedule and tasks, the CLI's choices, batch scoring,
the sidecar's routes and the skew report. Adding a model is a task and its feature service in the
declaration, its block in ``models/config.yaml`` and its dbt training set.

A predictive query can also declare a batch task for this process (``skewless predict --train``,
models/query_tasks.py): ``declare`` makes ``get_task`` find it, so training and batch scoring take
it by name like any task; the DAGs, dbt and the sidecar iterate ``TASKS`` only and never see it.

Two ways to serve, chosen per task:

- ``realtime``: scored per event when it happens, by the sidecar (``POST route``) from features in
  one of the serving modes, and scored again per event by the nightly batch; its served requests
  are logged and compared with the offline truth by the skew report.
- ``batch``: scored per entity every night as of midnight; the scores land in the predictions table
  and in Redis hashes ``skewless:<name>:<entity id>``, which the sidecar answers by key lookup
  (``GET route``).
"""

from __future__ import annotations

from skewless.features import TASKS
from skewless.vocabulary import PREDICTIONS_SCHEMA, Serving, Task  # noqa: F401  (re-exported)

# Tasks declared by predictive queries in this process (``declare``), by name.
_DECLARED: dict[str, Task] = {}


def declare(task: Task) -> Task:
    """Makes ``get_task`` find a task declared by a predictive query; ValueError when its name is
    a declared task's or alias."""
    if task.query is None:
        raise ValueError(f"task {task.name!r}: only tasks declared by a query are declared here")
    if task.name in names():
        raise ValueError(f"task {task.name!r}: the declaration already has a task of that name")
    _DECLARED[task.name] = task
    return task


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
    if task in _DECLARED:
        return _DECLARED[task]
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
