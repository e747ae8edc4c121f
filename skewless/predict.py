"""Runs a predictive query (skewless/pql.py) on the pipeline's own paths.

- ``FOR EACH``: batch scoring of the day with the task's champion (``models.batch_score.score``,
  what the ``batch_score`` DAG runs: the predictions table's partition for the day is rewritten and
  a batch task's Redis hashes updated), then the day's predictions read back and filtered by
  ``WHERE``: the key against ids, and aggregations over the entity's transactions in their past
  window from the prediction time (the midnight after the day) evaluated in the warehouse.
- ``FOR <key> = / IN`` of a batch task: the nightly score by key lookup in Redis, as the sidecar's
  GET route answers it.
- ``FOR <key> = / IN`` of a realtime task: each transaction, read from the warehouse, scored now
  through the sidecar's own app and route (same features, model and serving log as any request).

``train=True`` (``skewless predict --train``) first trains the target's model: a declared task as
``skewless train`` does, or a target no task predicts as a new task declared from the query
(models/query_tasks.py), registered in MLflow and found again by later queries (``parse``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from skewless import pql
from skewless.schemas import EVENT_KEYS, request_body

_STAGED = "stg_raw__transactions"


class PredictError(RuntimeError):
    """A query that parses but cannot run here: an id not in the data, no score yet."""


@dataclass
class Result:
    query: pql.Query
    path: str  # batch, lookup or realtime
    rows: pd.DataFrame
    seconds: float
    day: date | None = None
    summary: dict | None = None  # batch scoring's summary
    training: dict | None = None  # --train: the training set and run

    def as_dict(self, limit: int | None = None) -> dict:
        rows = self.rows if limit is None else self.rows.head(limit)
        return {
            "query": self.query.text,
            "task": self.query.task.name,
            "path": self.path,
            "day": self.day.isoformat() if self.day else None,
            "rows": len(self.rows),
            "seconds": round(self.seconds, 3),
            "scoring": self.summary,
            "training": self.training,
            "predictions": [_plain(r) for r in rows.to_dict("records")],
        }


def _plain(row: dict) -> dict:
    return {
        k: (v.isoformat() if isinstance(v, (datetime, pd.Timestamp)) else v) for k, v in row.items()
    }


def parse(text: str, cfg, *, train: bool = False) -> pql.Query:
    """``pql.parse`` against the declaration, then, if that fails, against the tasks earlier
    queries declared too (read from the model registry); ``train`` lets a new target declare a
    task."""
    from models import query_tasks

    try:
        return pql.parse(text)
    except pql.QueryError:
        known = query_tasks.known(cfg)
        return pql.parse(text, known=known, declare_new=train)


def run(
    query: pql.Query,
    cfg,
    *,
    day: date | None = None,
    mode: str | None = None,
    redis_url: str | None = None,
    train: bool = False,
) -> Result:
    """Runs ``query`` (parsed) with settings ``cfg``; ``day`` for FOR EACH (default: the day of
    the latest transaction), ``mode`` the serving mode of realtime scoring (default: the
    sidecar's), ``redis_url`` the Redis of scores and serving (default: the configured one, or
    the private server, started when needed); ``train`` trains the target's model first (a
    query that declares a new task must)."""
    from models import batch_score, query_tasks
    from skewless import redis_server, tasks

    started = time.perf_counter()
    task = query.task
    if task.query is not None:
        tasks.declare(task)  # training and scoring take it by name
    if query.new and not train:
        raise PredictError(f"{task.name} is declared by this query: it needs --train")
    training = query_tasks.train(cfg, task) if train else None
    if query.batch and task.realtime:  # transactions scored into the warehouse only
        result = _batch(query, cfg, day, None, started)
    else:
        url = redis_url or redis_server.resolve_url(cfg.redis_url, cfg.redis_dir)
        if query.batch:
            result = _batch(query, cfg, day, url, started)
        elif task.realtime:
            result = _realtime(query, cfg, mode, url, started)
        else:
            if train:  # the new champion's nightly scores, then the lookup
                batch_score.score(task, day or batch_score.last_event_day(cfg), cfg=cfg,
                                  redis_url=url)  # fmt: skip
            result = _lookup(query, url, started)
    result.training = training
    return result


def _batch(query: pql.Query, cfg, day: date | None, url: str | None, started: float) -> Result:
    from models import batch_score
    from skewless import warehouse

    task = query.task
    day = day or batch_score.last_event_day(cfg)
    summary = batch_score.score(task, day, cfg=cfg, redis_url=url)
    key = query.table.key
    joins, join_params = [], []
    filters, filter_params = ["p.score_date = ?"], [day]
    at = datetime.combine(day, datetime.min.time()) + timedelta(days=1)  # the prediction time
    for i, condition in enumerate(query.where):
        if condition.aggregation is None:
            filters.append(f"p.{key} in ({', '.join('?' for _ in condition.value)})")
            filter_params += list(condition.value)
            continue
        agg = condition.aggregation
        value = "count(*)" if agg.column is None else f"{agg.function.lower()}({agg.column})"
        joins.append(
            f"left join (select {key}, {value} as v from {_STAGED}"
            f" where event_timestamp >= ? and event_timestamp < ? group by {key}) as a{i}"
            f" on a{i}.{key} = p.{key}"
        )
        join_params += [at + agg.start, at + agg.end]
        # of no transactions: a count and a sum are 0 (as the declared windows' are), a mean,
        # minimum or maximum has no value and the condition is false
        measured = f"coalesce(a{i}.v, 0)" if agg.function in ("COUNT", "SUM") else f"a{i}.v"
        filters.append(f"{measured} {condition.op} ?")
        filter_params.append(condition.value)
    sql = (
        f"select p.* from {task.predictions_table} as p {' '.join(joins)}"  # noqa: S608
        f" where {' and '.join(filters)} order by p.{key}"
    )
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        rows = con.execute(sql, [*join_params, *filter_params]).df()
    finally:
        con.close()
    return Result(query, "batch", rows, time.perf_counter() - started, day, summary)


def _lookup(query: pql.Query, url: str, started: float) -> Result:
    from skewless import redis_server

    task = query.task
    client = redis_server.connect(url)
    try:
        pipe = client.pipeline(transaction=False)
        for entity_id in query.ids:
            pipe.hgetall(f"{task.scores_key_prefix}{entity_id}")
        replies = pipe.execute()
    finally:
        client.close()
    stored = [task.stored_score(reply) for reply in replies]
    missing = [i for i, row in zip(query.ids, stored, strict=True) if row is None]
    if missing:
        raise PredictError(
            f"no {task.name} score for {task.entity.name} {', '.join(map(repr, missing))}: "
            f"the nightly batch scores every {task.entity.name} seen before its day"
            f" (`skewless score {task.name}`)"
        )
    rows = [{query.table.key: i, **row} for i, row in zip(query.ids, stored, strict=True)]
    return Result(query, "lookup", pd.DataFrame(rows), time.perf_counter() - started)


def transactions(cfg, ids: tuple[str, ...]) -> list[dict]:
    """The request bodies of transactions ``ids`` from the warehouse, in the order given."""
    from skewless import warehouse

    marks = ", ".join("?" for _ in ids)
    columns = ", ".join([*EVENT_KEYS, "amount", "event_timestamp"])
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        frame = con.execute(
            f"select {columns} from {_STAGED} where transaction_id in ({marks})",  # noqa: S608
            list(ids),
        ).df()
    finally:
        con.close()
    found = {row.transaction_id: request_body(row) for row in frame.itertuples(index=False)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise PredictError(f"no transaction {', '.join(map(repr, missing))} in the warehouse")
    return [found[i] for i in ids]


def _realtime(query: pql.Query, cfg, mode: str | None, url: str, started: float) -> Result:
    from serving.app import create_app

    bodies = transactions(cfg, query.ids)
    app = create_app({"SETTINGS": cfg, "REDIS_URL": url})
    rows = []
    try:
        client = app.test_client()
        for body in bodies:
            sent = time.perf_counter()
            answer = client.post(
                query.task.route, json={**body, **({"mode": mode} if mode else {})}
            )
            if answer.status_code != 200:
                raise PredictError(
                    f"{query.task.route}: HTTP {answer.status_code} {answer.get_json()}"
                )
            reply = answer.get_json()
            rows.append(
                {
                    **{k: reply.get(k, body.get(k)) for k in EVENT_KEYS},
                    query.task.score_column: reply[query.task.score_column],
                    "decision": reply.get("decision"),
                    "mode": reply.get("mode"),
                    "model_version": reply.get("model", {}).get("version"),
                    "request_id": reply.get("request_id"),
                    "latency_ms": round((time.perf_counter() - sent) * 1000, 3),
                }
            )
    finally:
        app.extensions["skewless"].close()
    return Result(query, "realtime", pd.DataFrame(rows), time.perf_counter() - started)
