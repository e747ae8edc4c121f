"""Training frames: labeled rows from the dbt training sets, features from Feast or the warehouse.

The dbt training sets (``fraud_training_set``, ``churn_training_set``) hold the labels and entity keys;
the features come either from Feast's point-in-time retrieval over the task's feature service
(``source="feast"``, the canonical pattern) or straight from the training set
(``source="warehouse"``). tests/dbt proves the two equal; ``fingerprint()`` of either frame is the same.
The warehouse is only ever opened read-only here.

``source="arrival"`` takes the features as the online path could have seen them: the arrival-aware
training set (``fraud_training_set_as_arrived``, skewless/dbtgen_arrival.py), where each event's
features count only the events that had arrived before it (what exact mode serves).

``source="serving-log"`` ("train like you serve") takes the features as the sidecar served them:
the training set's labelled rows of the transactions in the serving log (``serving.serving_log``,
loaded by ``skewless flush-log``), each with the feature vector it was scored on (the latest
request of it; ``serving-log:<mode>`` only requests served in that mode). Transactions never
served are not training rows.

The default is the warehouse. Measured on a shared 2-core box, two runs each (the second quieter),
same fingerprints from both sources:

    rows                            warehouse        feast (duckdb offline store)
    fraud   213K (5000 x 90 days)   0.8 / 1.2 s      ~100 / 29 s
    fraud   994K (23500 x 90 days)  11.8 / 5.9 s     157 / 76 s
    churn   1.28M (23500 x 90 days) 3.2 / 1.7 s      84 / 42 s

Feast's ibis point-in-time join is an inequality join then a row_number() dedupe, which grows with
rows per entity; the dbt training set already holds the same point-in-time rows. ``source="feast"``
stays for the canonical path and to check the two agree.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd

from skewless import modes
from skewless import settings as settings_module
from skewless.dbtgen_sets import arrival_training_set
from skewless.features import REQUEST_FEATURES, request_features_frame
from skewless.schemas import EVENT_ID, SERVING_LOG_TABLE
from skewless.tasks import Task, get_task

SOURCES = (
    "feast",
    "warehouse",
    "arrival",
    "serving-log",
    *(f"serving-log:{m}" for m in modes.NAMES),
)
DEFAULT_SOURCE = "warehouse"


def feature_columns(task: str) -> list[str]:
    """The model's features in their fixed order: the feature service's, then request-time ones."""
    spec = get_task(task)
    names = list(spec.group_features)
    if spec.request_features:
        names += [f.name for f in REQUEST_FEATURES]
    return names


@dataclass
class TrainingFrame:
    task: str
    X: pd.DataFrame  # model features, float64, in feature_columns(task) order
    y: pd.Series  # 0/1 labels (int8)
    keys: pd.DataFrame  # ids, event_timestamp (naive UTC) and extra columns; same index as X
    source: str
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    as_of: datetime | None = None
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, start: datetime, end: datetime) -> TrainingFrame:
        """The rows with event_timestamp in [start, end), index reset."""
        ts = self.keys["event_timestamp"]
        mask = ((ts >= start) & (ts < end)).to_numpy()
        return TrainingFrame(
            self.task,
            self.X[mask].reset_index(drop=True),
            self.y[mask].reset_index(drop=True),
            self.keys[mask].reset_index(drop=True),
            self.source,
            [(start, end)],
            self.as_of,
        )

    def fingerprint(self) -> str:
        """sha256 of ids, timestamps, features and labels in row order: the same data, the same
        digest (whichever source loaded it)."""
        return fingerprint(self)


def fingerprint(frame: TrainingFrame) -> str:
    digest = hashlib.sha256()
    key_cols = [c for c in frame.keys.columns if c not in get_task(frame.task).extra_columns]
    digest.update(repr((key_cols, list(frame.X.columns), frame.y.name)).encode())
    for part in (frame.keys[key_cols], frame.X, frame.y.to_frame()):
        hashed = pd.util.hash_pandas_object(part, index=False).to_numpy()
        digest.update(hashed.tobytes())
    return digest.hexdigest()


def naive_utc(value: datetime | None) -> datetime | None:
    """Warehouse timestamps are naive UTC; aware inputs (e.g. Airflow's) are converted."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _window_predicate(windows: Sequence[tuple[datetime, datetime]]) -> tuple[str, list]:
    clauses, params = [], []
    for start, end in windows:
        clauses.append("(event_timestamp >= ? and event_timestamp < ?)")
        params += [start, end]
    return "(" + " or ".join(clauses) + ")", params


def as_of_predicate(task: Task, as_of: datetime | None) -> tuple[str, list]:
    """Rows usable at ``as_of``: labels known by then (their ``label_timestamp``, or the end of
    the task's label horizon)."""
    if as_of is None:
        return "true", []
    if task.label_horizon is None:
        return "label_timestamp <= ? and event_timestamp < ?", [as_of, as_of]
    return "event_timestamp + ? <= ?", [task.label_horizon, as_of]


def query_rows(
    con,
    spec: Task,
    windows: Sequence[tuple[datetime, datetime]],
    as_of,
    columns: list[str],
    table: str | None = None,
) -> pd.DataFrame:
    where, params = _window_predicate(windows)
    known, known_params = as_of_predicate(spec, as_of)
    order = ", ".join(["event_timestamp", *[c for c in spec.merge_keys if c != "event_timestamp"]])
    sql = (
        f"select {', '.join(columns)} from {table or spec.training_set} "
        f"where {where} and {known} and {spec.label} is not null order by {order}"
    )
    return con.execute(sql, params + known_params).fetchdf()


def load_training_frame(
    task: str,
    start: datetime,
    end: datetime,
    *,
    cfg=None,
    as_of: datetime | None = None,
    source: str = DEFAULT_SOURCE,
) -> TrainingFrame:
    """The labeled rows of ``task`` with event_timestamp in [start, end) (naive UTC).

    ``as_of`` keeps only what was known then: fraud rows whose label_timestamp <= as_of, churn rows
    whose 30-day horizon ended by as_of. ``source`` picks where the features come from.
    """
    if naive_utc(start) >= naive_utc(end):
        raise ValueError(f"start={start} must be before end={end}")
    return load_windows(task, [(start, end)], cfg=cfg, as_of=as_of, source=source)


def load_windows(
    task: str,
    windows: Sequence[tuple[datetime, datetime]],
    *,
    cfg=None,
    as_of: datetime | None = None,
    source: str = DEFAULT_SOURCE,
) -> TrainingFrame:
    """load_training_frame() over several event-time windows at once (one retrieval)."""
    from skewless import warehouse

    if source not in SOURCES:
        raise ValueError(f"source={source!r}: expected one of {SOURCES}")
    spec = get_task(task)
    if (source.startswith("serving-log") or source == "arrival") and not spec.realtime:
        raise ValueError(f"source {source}: {spec.name} is a batch task, its rows are not served")
    cfg = cfg or settings_module.load()
    windows = [(naive_utc(start), naive_utc(end)) for start, end in windows]
    as_of = naive_utc(as_of)
    started = time.perf_counter()
    base = [*spec.ids, "event_timestamp", *spec.extra_columns]
    if spec.request_features:
        base.append("amount")
    columns = base + [spec.label]
    table = arrival_training_set(spec) if source == "arrival" else None
    if source in ("warehouse", "arrival"):
        columns += [c for c in spec.group_features if c not in columns]
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        rows = query_rows(con, spec, windows, as_of, columns, table)
        if source.startswith("serving-log"):
            rows = _join_served_features(con, spec, rows, source.partition(":")[2] or None)
    finally:
        con.close()
    if source == "feast":
        rows = _join_feast_features(cfg, spec, rows)
    frame = _assemble(spec, rows, source)
    frame.windows, frame.as_of = list(windows), as_of
    frame.seconds = round(time.perf_counter() - started, 3)
    return frame


def _join_feast_features(cfg, spec: Task, rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time retrieval of the feature service's features for each row (Feast)."""
    from skewless import pipeline

    if rows.empty:
        return rows.reindex(columns=[*rows.columns, *spec.group_features])
    store = pipeline.feature_store(cfg, cfg.redis_url)
    entity_cols = list(dict.fromkeys([*spec.merge_keys, *spec.ids, "event_timestamp"]))
    entity_df = rows[entity_cols].copy()
    entity_df["event_timestamp"] = entity_df["event_timestamp"].dt.tz_localize("UTC")
    retrieved = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(spec.service.name)
    ).to_df()
    retrieved["event_timestamp"] = retrieved["event_timestamp"].dt.tz_convert(None)
    retrieved = retrieved[[*spec.merge_keys, *spec.group_features]]
    if spec.merge_keys == ("customer_id", "event_timestamp"):
        # the entity frame's timestamps may come back at another resolution
        retrieved["event_timestamp"] = retrieved["event_timestamp"].astype(
            rows["event_timestamp"].dtype
        )
    joined = rows.merge(retrieved, on=list(spec.merge_keys), how="left", validate="one_to_one")
    if len(joined) != len(rows):  # pragma: no cover - validate= raises first
        raise RuntimeError("Feast returned a different number of rows than it was given")
    return joined


def served_features_sql(names: Sequence[str]) -> tuple[str, str, list[str]]:
    """The serving log's JSON feature vectors (column ``features``) as DuckDB columns, parsed by
    DuckDB (a Python json.loads per row costs ~1.5 s per 100K requests): the ``json_transform``
    expression aliased ``f``, the select list of its fields and their column names
    (``feature:<i>``, which no log column shadows)."""
    structure = json.dumps({n: "DOUBLE" for n in names}).replace("'", "''")
    columns = [f"feature:{i}" for i in range(len(names))]
    fields = ", ".join(f'f."{n}" as "{c}"' for n, c in zip(names, columns, strict=True))
    return f"json_transform(features, '{structure}') as f", fields, columns


def _join_served_features(con, spec: Task, rows: pd.DataFrame, mode: str | None) -> pd.DataFrame:
    """The rows of served transactions, each with the features of its latest logged request (in
    ``mode`` when given) as ``served_features_sql``'s columns."""
    parsed, fields, _ = served_features_sql(feature_columns(spec.name))
    where, params = ("where mode = ?", [mode]) if mode else ("", [])
    try:
        served = con.execute(
            f"select {EVENT_ID}, {fields} from ("  # noqa: S608 - names from the declaration
            f"  select {EVENT_ID}, {parsed} from {SERVING_LOG_TABLE} {where}"
            f"  qualify row_number() over (partition by {EVENT_ID} order by served_at desc,"
            "   request_id desc) = 1)",
            params,
        ).fetchdf()
    except duckdb.CatalogException:
        served = pd.DataFrame(columns=[EVENT_ID])
    joined = rows.merge(served, on=EVENT_ID, how="inner", validate="one_to_one")
    if joined.empty:
        raise ValueError(
            f"source serving-log{':' + mode if mode else ''}: no served request of a labelled"
            f" row in the windows in {SERVING_LOG_TABLE} (serve or `skewless replay` those days,"
            " then `skewless flush-log`)"
        )
    return joined


def _assemble(spec: Task, rows: pd.DataFrame, source: str) -> TrainingFrame:
    from skewless.features import request_features_frame

    rows = rows.reset_index(drop=True)
    names = feature_columns(spec.name)
    if source.startswith("serving-log"):  # every model feature as it was served
        _, _, columns = served_features_sql(names)
        X = rows[columns].astype("float64").set_axis(names, axis=1)
    else:
        X = rows[spec.group_features].astype("float64")
        if spec.request_features:
            request = request_features_frame(rows["amount"], rows["event_timestamp"], rows)
            X = pd.concat([X, request.astype("float64")], axis=1)
        X = X[names]
    y = rows[spec.label].astype("int8").rename(spec.label)
    keys = rows[[*spec.ids, "event_timestamp", *spec.extra_columns]].copy()
    return TrainingFrame(spec.name, X, y, keys, source)


EVENTS = "stg_raw__transactions"  # the staged events a realtime task scores


def event_rows(con, task: str | Task, *, where: str, params=(), columns=()) -> pd.DataFrame:
    """A realtime task's per-event rows, as the model scores them: the staged events matching
    ``where`` (a predicate over alias ``t``), each with every group's feature row just before it
    (left joined: ``is_missing`` is true when a group has none) and the request-time features.

    Columns: the task's ids, event_timestamp, ``columns`` (more columns of the events),
    is_missing, then the features in ``feature_columns(task)`` order. Event-time order.
    """
    spec = get_task(task)
    groups = spec.service.groups
    aliases = [f"g{i}" for i in range(len(groups))]
    features = [f"{a}.{n}" for a, g in zip(aliases, groups, strict=True) for n in g.feature_names]
    joins = "\n".join(
        f"left join {g.name} as {a} on {a}.{EVENT_ID} = t.{EVENT_ID} and not {a}.is_snapshot"
        for a, g in zip(aliases, groups, strict=True)
    )
    keys = [*spec.ids, "event_timestamp", *columns]
    selected = dict.fromkeys([*keys, "amount"])  # the request features need the amount
    rows = con.execute(
        f"""
        select {", ".join(f"t.{c}" for c in selected)},
            {" or ".join(f"{a}.{EVENT_ID} is null" for a in aliases)} as is_missing,
            {", ".join(features)}
        from {EVENTS} as t
        {joins}
        where {where}
        order by t.event_timestamp, t.{EVENT_ID}
        """,
        list(params),
    ).fetchdf()
    if spec.request_features:
        request = request_features_frame(rows["amount"], rows["event_timestamp"], rows)
        rows = pd.concat([rows, request.drop(columns=["amount"])], axis=1)
    return rows[[*keys, "is_missing", *feature_columns(spec.name)]]


def to_matrix(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The float64 matrix a LightGBM Booster scores, in the model's feature order."""
    return np.ascontiguousarray(frame[list(columns)].to_numpy(dtype="float64"))


def predict(booster, frame: pd.DataFrame, *, num_threads: int = 1) -> np.ndarray:
    """Scores rows with a LightGBM Booster on a NumPy matrix, in the booster's own feature order
    (KeyError if the frame lacks one of its features)."""
    names = booster.feature_name()
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise KeyError(f"the model needs features the data lacks: {missing}")
    if frame.empty:
        return np.empty(0)
    return booster.predict(to_matrix(frame, names), num_threads=num_threads)
