"""The skew report: what was served against the offline truth.

Joins ``serving.serving_log`` (one mode, one event day) to the per-transaction feature rows dbt
computed for the same transactions (``customer_transaction_windows`` and
``merchant_transaction_windows``, ``not is_snapshot``) plus the request-time features
(``request_features_frame``), then measures per feature (match rate, absolute differences,
Jensen-Shannon divergence and PSI on shared quantile bins), per score (the served model version's
booster applied to the offline vector), per decision at the fraud alert threshold, and the
average precision and recall at the threshold of both scores. Every mismatching feature value is
attributed to a cause:

- ``late_arrival``: an event of the feature's entity with event time in the feature's window before
  t arrived after the request was served (arrival is not event time);
- ``staleness``: otherwise, when the mode serves a snapshot or lagging state (materialized,
  streaming);
- ``logic``: otherwise (exact mode should match the offline truth exactly).

The request's served time is its transaction's ``arrival_timestamp`` (``skewless replay`` sends
each request when its transaction arrives; the log's ``served_at`` is wall-clock time), or the
log's ``served_at`` when the warehouse does not know the transaction.

Beyond the contract keys the report carries the seed's three tables for a few transactions
(``examples``: their features at training time, as served, and the prediction impact) and the
binned distributions the HTML page plots (``histograms``); ``monitoring/skew_html.py`` renders it and
``monitoring/skew_publish.py`` writes it and logs it to MLflow.

The warehouse is only opened read-only.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from models.datasets import event_rows, feature_columns
from monitoring import skew_measures as measures
from monitoring.flush import TABLE
from monitoring.skew_measures import consequences, distribution_distances  # noqa: F401 (API)
from skewless import modes
from skewless.features import AMOUNT_RATIOS
from skewless.schemas import EVENT_ID
from skewless.tasks import realtime_task


class SkewReportError(RuntimeError):
    """Nothing to report on: no serving log (or no rows for the day / mode asked for)."""


_EMPTY = "run skewless replay and skewless flush-log first"


# -- loading --------------------------------------------------------------------------------------


def _resolve(con, day: date | None, mode: str | None) -> tuple[str, date]:
    """The mode and day to report on (defaults: the most logged mode, then its last day)."""
    try:
        ((count,),) = con.execute(f"select count(*) from {TABLE}").fetchall()
    except Exception as exc:  # duckdb.CatalogException: no such table / schema
        if "does not exist" not in str(exc):
            raise
        raise SkewReportError(f"no serving log table {TABLE}: {_EMPTY}") from None
    if not count:
        raise SkewReportError(f"the serving log {TABLE} is empty: {_EMPTY}")
    if mode is None:
        where, params = "true", []
        if day is not None:
            where, params = "event_timestamp::date = ?", [day]
        found = con.execute(
            f"select mode, count(*) as n from {TABLE} where {where} "
            "group by mode order by n desc, mode limit 1",
            params,
        ).fetchall()
        if not found:
            raise SkewReportError(f"no served requests on {day} in {TABLE}: {_EMPTY}")
        mode = found[0][0]
    if day is None:
        (last,) = con.execute(
            f"select max(event_timestamp)::date from {TABLE} where mode = ?", [mode]
        ).fetchone()
        if last is None:
            raise SkewReportError(f"no served requests in mode {mode!r} in {TABLE}: {_EMPTY}")
        day = last
    return mode, day


def _served_rows(con, day: date, mode: str, names: list[str]):
    """(log rows, served feature values as float64 columns ``names``); DuckDB parses the JSON
    feature vectors (a Python json.loads per row costs ~1.5 s per 100K requests)."""
    structure = json.dumps({name: "DOUBLE" for name in names}).replace("'", "''")
    fields = ", ".join(f'f."{name}" as "feature:{i}"' for i, name in enumerate(names))
    rows = con.execute(
        f"select * exclude (f), {fields} from ("
        f"  select *, json_transform(features, '{structure}') as f from {TABLE}"
        "   where mode = ? and event_timestamp::date = ?"
        ") order by event_timestamp, request_id",
        [mode, day],
    ).fetchdf()
    if rows.empty:
        raise SkewReportError(f"no served requests in mode {mode!r} on {day} in {TABLE}: {_EMPTY}")
    columns = [f"feature:{i}" for i in range(len(names))]
    served = rows[columns].astype("float64").set_axis(names, axis=1)
    return rows.drop(columns=columns), served


def offline_truth(con, transaction_ids) -> pd.DataFrame:
    """The offline feature rows (dbt per-event rows + request features) of the given events, with
    the task's ids, event_timestamp, arrival_timestamp and its label; one row per event id found
    (with every group's row), indexed by the event id."""
    task = realtime_task()
    ids = pd.DataFrame({EVENT_ID: pd.Series(list(transaction_ids), dtype="object")})
    con.register("skew_ids", ids)
    try:
        rows = event_rows(
            con,
            task,
            where=f"t.{EVENT_ID} in (select {EVENT_ID} from skew_ids)",
            columns=("arrival_timestamp", task.label),
        )
    finally:
        con.unregister("skew_ids")
    out = rows[~rows["is_missing"]].drop(columns=["is_missing"]).reset_index(drop=True)
    names = feature_columns(task.name)
    out[names] = out[names].astype("float64")
    return out.set_index(EVENT_ID, drop=False)


def _load_boosters(cfg, versions) -> dict:
    """version -> (booster, the alert threshold it was trained with)."""
    from models import registry
    from models.config import model_config

    config = model_config(cfg, realtime_task().name)
    name = config["registered_model"]
    mlflow, client = registry.connect(cfg)
    return {
        v: (
            registry.load_version(mlflow, name, str(v)),
            registry.alert_threshold(client, name, str(v), config),
        )
        for v in versions
    }


def _feature_scope() -> dict[str, tuple[str, timedelta, timedelta]]:
    """feature -> (entity key, start, end): it depends on the events in [t - start, t - end)."""
    scope = {}
    for group in realtime_task().service.groups:
        for aggregate, window, name in group.window_features():
            start, end = aggregate.bounds(window) if window else (group.horizon, timedelta(0))
            scope[name] = (group.entity.join_key, start, end)
    for ratio in AMOUNT_RATIOS:
        scope[ratio.name] = scope[ratio.feature]
    return scope


def _late_arrivals(con, mismatches: pd.DataFrame) -> np.ndarray:
    """For each mismatch (entity_key, entity_id, transaction_id, t, start_seconds, end_seconds,
    served_time): whether an event of that entity in [t - start, t - end) arrived after the served
    time."""
    flags = np.zeros(len(mismatches), dtype=bool)
    for key in sorted({g.entity.join_key for g in realtime_task().service.groups}):
        part = mismatches[mismatches["entity_key"] == key]
        if part.empty:
            continue
        columns = ["row", "entity_id", "transaction_id", "t", "start_seconds", "end_seconds"]
        frame = part[[*columns, "served_time"]]
        con.register("skew_mismatches", frame.reset_index(drop=True))
        try:
            late = con.execute(
                f"""
                select distinct x.row
                from skew_mismatches as x
                join stg_raw__transactions as e
                    on e.{key} = x.entity_id
                    and e.transaction_id <> x.transaction_id
                    and e.event_timestamp < x.t - to_seconds(x.end_seconds)
                    and e.event_timestamp >= x.t - to_seconds(x.start_seconds)
                    and e.arrival_timestamp > x.served_time
                """
            ).fetchall()
        finally:
            con.unregister("skew_mismatches")
        flags[[r for (r,) in late]] = True
    return flags


# -- the report -----------------------------------------------------------------------------------


def served_modes(day: date, cfg=None) -> list[str]:
    """The modes with logged requests on ``day`` (none when there is no serving log yet)."""
    from skewless import settings, warehouse

    cfg = cfg or settings.load()
    if not cfg.warehouse_path.exists():
        return []
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        found = con.execute(
            f"select distinct mode from {TABLE} where event_timestamp::date = ? order by mode",
            [day],
        ).fetchall()
    except Exception as exc:  # duckdb.CatalogException: no serving log table yet
        if "does not exist" not in str(exc):
            raise
        return []
    finally:
        con.close()
    return [m for (m,) in found if m is not None]


def skew_report(day: date | None = None, *, mode: str | None = None, cfg=None) -> dict:
    """The skew report of one served day and mode (defaults: the mode of the most logged requests,
    then its last served event day): the JSON contract (keys ``requests``,
    ``mode``, ``features``, ``score``, ``decisions``, ``quality``, ``causes``) plus ``date``,
    ``threshold``, ``model_versions``, ``examples`` (the three tables) and ``histograms``."""
    from models import datasets
    from skewless import settings, warehouse

    cfg = cfg or settings.load()
    if isinstance(day, datetime):
        day = day.date()
    names = datasets.feature_columns(realtime_task().name)

    if not cfg.warehouse_path.exists():
        raise SkewReportError(f"no warehouse at {cfg.warehouse_path}: {_EMPTY}")
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    con.execute("set enable_progress_bar = false")  # no bars on the CLI's stderr
    loader = ThreadPoolExecutor(max_workers=1)
    try:
        mode, day = _resolve(con, day, mode)
        logged_versions = con.execute(
            f"select distinct model_version from {TABLE} where mode = ? "
            "and event_timestamp::date = ? and model_version is not null",
            [mode, day],
        ).fetchall()
        # importing MLflow and loading the models (seconds in a fresh process) overlaps the queries
        boosters = loader.submit(_load_boosters, cfg, sorted(v for (v,) in logged_versions))
        log, served = _served_rows(con, day, mode, names)
        truth = offline_truth(con, log[EVENT_ID])
        known = log[EVENT_ID].isin(truth.index).to_numpy()
        log = log[known].reset_index(drop=True)
        served = served[known].reset_index(drop=True)
        truth = truth.loc[log[EVENT_ID]].reset_index(drop=True)
        offline = truth[names]

        features, feature_histograms, mismatch_parts = {}, {}, []
        scope = _feature_scope()
        served_time = truth["arrival_timestamp"].fillna(log["served_at"])
        for name in names:
            s, o = served[name].to_numpy(), offline[name].to_numpy()
            features[name], feature_histograms[name] = measures.feature_stats(s, o)
            bad = ~measures.matches(s, o)
            if bad.any():
                key, start, end = scope.get(name, (None, timedelta(0), timedelta(0)))
                mismatch_parts.append(
                    pd.DataFrame(
                        {
                            "feature": name,
                            "entity_key": key,
                            "entity_id": truth[key][bad].to_numpy() if key else None,
                            "transaction_id": truth[EVENT_ID][bad].to_numpy(),
                            "t": truth["event_timestamp"][bad].to_numpy(),
                            "start_seconds": start.total_seconds(),
                            "end_seconds": end.total_seconds(),
                            "served_time": served_time[bad].to_numpy(),
                        }
                    )
                )
        causes = {"late_arrival": 0, "staleness": 0, "logic": 0}
        if mismatch_parts:
            mismatches = pd.concat(mismatch_parts, ignore_index=True)
            mismatches["row"] = np.arange(len(mismatches))
            late = _late_arrivals(con, mismatches)
            causes["late_arrival"] = int(late.sum())
            other = "staleness" if modes.mode(mode).stale else "logic"
            causes[other] = int((~late).sum())
    finally:
        con.close()
        loader.shutdown(wait=False)

    versions = sorted(log["model_version"].dropna().unique())
    offline_scores = np.full(len(log), np.nan)
    thresholds = np.full(
        len(log), np.nan
    )  # each row at the threshold of the version that served it
    threshold = None
    for version, (booster, threshold) in boosters.result().items():
        rows = (log["model_version"] == version).to_numpy()
        # one call over all rows: two threads cost no spin-waiting here (models/batch_score.py)
        offline_scores[rows] = datasets.predict(booster, offline[rows], num_threads=2)
        thresholds[rows] = threshold
    served_scores = log["fraud_probability"].to_numpy(dtype="float64")
    drift = np.abs(served_scores - offline_scores)
    drift = drift[~np.isnan(drift)]

    served_decline = (log["decision"] == "decline").to_numpy()
    offline_decline = offline_scores >= thresholds
    is_fraud = truth[realtime_task().label]
    consequence = consequences(served_decline, offline_decline, is_fraud)
    known = is_fraud.notna()
    return {
        "requests": len(log),
        "mode": mode,
        "date": day.isoformat(),
        "threshold": threshold,  # of the newest model version served
        "model_versions": [str(v) for v in versions],
        "features": features,
        "score": {
            "mean_abs_drift": float(drift.mean()) if len(drift) else None,
            "p95_abs_drift": measures.quantile(drift, 0.95),
        },
        "decisions": {
            "flipped": int((served_decline != offline_decline).sum()),
            "missed_frauds": int((consequence == "missed fraud").sum()),
            "false_alerts": int((consequence == "false alert").sum()),
        },
        "quality": {
            "served_average_precision": measures.average_precision(is_fraud, served_scores),
            "offline_average_precision": measures.average_precision(is_fraud, offline_scores),
            "served_recall": measures.recall(is_fraud, served_decline),
            "offline_recall": measures.recall(is_fraud, offline_decline),
            "labelled": int(known.sum()),
            "frauds": int((is_fraud[known] == 1).sum()),
        },
        "causes": causes,
        "examples": measures.examples(
            log,
            truth,
            served,
            offline,
            (served_scores, offline_scores),
            (served_decline, offline_decline, consequence),
            features,
        ),
        "histograms": {
            "features": feature_histograms,
            **measures.score_histograms(served_scores, offline_scores),
        },
    }


def _num(value, spec=".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def example_tables(report: dict) -> dict[str, tuple[list[str], list[list]]]:
    """The three tables as {title: (header, rows)}, the shown features only (text and HTML)."""
    examples = report["examples"]
    shown = examples["features"]
    keys = [EVENT_ID, realtime_task().card]
    impact = [realtime_task().label, "offline_score", "served_score", "score_drift"]
    impact += ["offline_decision", "served_decision", "consequence"]
    return {
        "features at training time (offline truth)": (
            [*keys, "event_timestamp", *shown],
            [[r[k] for k in [*keys, "event_timestamp", *shown]] for r in examples["training"]],
        ),
        "features at serving time": (
            [*keys, "served_at", *shown],
            [[r[k] for k in [*keys, "served_at", *shown]] for r in examples["serving"]],
        ),
        "prediction impact": (
            [*keys, *impact],
            [[r[k] for k in [*keys, *impact]] for r in examples["impact"]],
        ),
    }


def _cell(value) -> str:
    if isinstance(value, float):
        return _num(value, ".4g")
    return "-" if value is None else str(value)


def format_table(report: dict) -> str:
    """A short readable summary of a report (for the CLI without --json)."""
    num = _num
    lines = [f"skew report: {report['requests']} requests, mode {report['mode']}", ""]
    header = f"{'feature':<34} {'match':>7} {'mean|d|':>10} {'p95|d|':>10} {'JS':>8} {'PSI':>8}"
    lines += [header, "-" * len(header)]
    for name, s in report["features"].items():
        lines.append(
            f"{name:<34} {num(s['match_rate'], '.3f'):>7} {num(s['mean_abs_diff']):>10} "
            f"{num(s['p95_abs_diff']):>10} {num(s['js_divergence']):>8} {num(s['psi']):>8}"
        )
    score, dec, q, c = report["score"], report["decisions"], report["quality"], report["causes"]
    lines += [
        "",
        f"score drift: mean {num(score['mean_abs_drift'])}, p95 {num(score['p95_abs_drift'])}",
        f"decisions: flipped {dec['flipped']}, missed frauds {dec['missed_frauds']}, "
        f"false alerts {dec['false_alerts']}",
        f"average precision: served {num(q['served_average_precision'])}, "
        f"offline {num(q['offline_average_precision'])}",
        f"recall at threshold: served {num(q.get('served_recall'))}, "
        f"offline {num(q.get('offline_recall'))}",
        f"mismatch causes: late arrival {c['late_arrival']}, staleness {c['staleness']}, "
        f"logic {c['logic']}",
    ]
    if report.get("examples", {}).get("impact"):
        for title, (head, rows) in example_tables(report).items():
            cells = [head, *[[_cell(v) for v in row] for row in rows]]
            widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
            lines += ["", f"{title}:"]
            for j, row in enumerate(cells):
                lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
                if j == 0:
                    lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
