"""The skew report: what was served against the offline truth.

Joins ``serving.serving_log`` (one mode, one event day) to the per-transaction feature rows dbt
computed for the same transactions (``customer_transaction_windows`` and
``merchant_transaction_windows``, ``not is_snapshot``) plus the request-time features
(``request_features_frame``), then measures per feature (match rate, absolute differences,
Jensen-Shannon divergence and PSI on shared quantile bins), per score (the served model version's
booster applied to the offline vector), per decision at the fraud alert threshold, and the
average precision and recall at the threshold of both scores. Every mismatching feature value is
attributed to a cause: late arrival, staleness or logic (``monitoring/skew_causes.py``).

Beyond the contract keys the report carries the seed's three tables for a few transactions
(``examples``: their features at training time, as served, and the prediction impact) and the
binned distributions the HTML page plots (``histograms``); ``monitoring/skew_html.py`` renders it and
``monitoring/skew_publish.py`` writes it and logs it to MLflow.

The warehouse is only opened read-only.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from models.datasets import event_rows, feature_columns, predict, served_features_sql
from monitoring import skew_gate
from monitoring import skew_measures as measures
from monitoring.flush import TABLE
from monitoring.skew_causes import mismatch_causes
from monitoring.skew_lag import arrival_sentence, arrivals, sentences, served_lags
from monitoring.skew_measures import consequences, distribution_distances  # noqa: F401 (API)
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
    """(log rows, served feature values as float64 columns ``names``)."""
    parsed, fields, columns = served_features_sql(names)
    rows = con.execute(
        f"select * exclude (f), {fields} from ("
        f"  select *, {parsed} from {TABLE}"
        "   where mode = ? and event_timestamp::date = ?"
        ") order by event_timestamp, request_id",
        [mode, day],
    ).fetchdf()
    if rows.empty:
        raise SkewReportError(f"no served requests in mode {mode!r} on {day} in {TABLE}: {_EMPTY}")
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


@dataclass(frozen=True)
class _ServedDay:
    """One mode's served day: the log rows, their served features and offline truth (aligned row
    by row), the mismatch causes and the future of the served model versions' boosters."""

    mode: str
    day: date
    log: pd.DataFrame
    served: pd.DataFrame
    truth: pd.DataFrame
    causes: dict[str, int]
    boosters: Future
    arrivals: dict  # the day's late arrivals (skew_lag.arrivals)


@dataclass(frozen=True)
class _Scores:
    """Served and offline scores and decisions at the threshold, and each row's consequence."""

    served: np.ndarray
    offline: np.ndarray
    served_decline: np.ndarray
    offline_decline: np.ndarray
    consequence: np.ndarray
    threshold: float | None  # of the newest model version served


def skew_report(day: date | None = None, *, mode: str | None = None, cfg=None) -> dict:
    """The skew report of one served day and mode (defaults: the mode of the most logged requests,
    then its last served event day): the JSON contract (keys ``requests``,
    ``mode``, ``features``, ``score``, ``decisions``, ``quality``, ``causes``) plus ``date``,
    ``threshold``, ``model_versions``, ``examples`` (the three tables) and ``histograms``."""
    from skewless import settings

    cfg = cfg or settings.load()
    if isinstance(day, datetime):
        day = day.date()
    names = feature_columns(realtime_task().name)
    served_day = _load_day(cfg, day, mode, names)
    offline = served_day.truth[names]
    features, feature_histograms = _feature_measures(served_day.served, offline, names)
    scores = _scores(served_day, offline)
    return _assemble(served_day, offline, features, feature_histograms, scores)


def _load_day(cfg, day: date | None, mode: str | None, names: list[str]) -> _ServedDay:
    """Reads the served day from the warehouse (read-only) and counts the mismatch causes; the
    served model versions load in a background thread meanwhile."""
    from skewless import warehouse

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
        causes = mismatch_causes(con, mode, log, served, truth, names)
        arrived = arrivals(con, day, mode)
    finally:
        con.close()
        loader.shutdown(wait=False)
    return _ServedDay(mode, day, log, served, truth, causes, boosters, arrived)


def _feature_measures(served, offline, names: list[str]) -> tuple[dict, dict]:
    """Per feature: its measures (match rate, differences, divergences) and its histograms."""
    features, histograms = {}, {}
    for name in names:
        s, o = served[name].to_numpy(), offline[name].to_numpy()
        features[name], histograms[name] = measures.feature_stats(s, o)
    return features, histograms


def _scores(served_day: _ServedDay, offline: pd.DataFrame) -> _Scores:
    """Each row's offline score by the model version that served it, and the decisions of both
    scores at that version's threshold."""
    log = served_day.log
    offline_scores = np.full(len(log), np.nan)
    # each row at the threshold of the version that served it
    thresholds = np.full(len(log), np.nan)
    threshold = None
    for version, (booster, threshold) in served_day.boosters.result().items():
        rows = (log["model_version"] == version).to_numpy()
        # one call over all rows: two threads cost no spin-waiting here (models/batch_score.py)
        offline_scores[rows] = predict(booster, offline[rows], num_threads=2)
        thresholds[rows] = threshold
    served_scores = log["fraud_probability"].to_numpy(dtype="float64")
    served_decline = (log["decision"] == "decline").to_numpy()
    offline_decline = offline_scores >= thresholds
    is_fraud = served_day.truth[realtime_task().label]
    consequence = consequences(served_decline, offline_decline, is_fraud)
    return _Scores(
        served_scores, offline_scores, served_decline, offline_decline, consequence, threshold
    )


def _assemble(served_day: _ServedDay, offline, features, feature_histograms, scores) -> dict:
    """The report dict (its key order is the JSON's)."""
    log, truth = served_day.log, served_day.truth
    versions = sorted(log["model_version"].dropna().unique())
    drift = np.abs(scores.served - scores.offline)
    drift = drift[~np.isnan(drift)]
    is_fraud = truth[realtime_task().label]
    known = is_fraud.notna()
    return {
        "requests": len(log),
        "mode": served_day.mode,
        "date": served_day.day.isoformat(),
        "threshold": scores.threshold,  # of the newest model version served
        "model_versions": [str(v) for v in versions],
        "features": features,
        "score": {
            "mean_abs_drift": float(drift.mean()) if len(drift) else None,
            "p95_abs_drift": measures.quantile(drift, 0.95),
        },
        "decisions": {
            "flipped": int((scores.served_decline != scores.offline_decline).sum()),
            "missed_frauds": int((scores.consequence == "missed fraud").sum()),
            "false_alerts": int((scores.consequence == "false alert").sum()),
        },
        "quality": {
            "served_average_precision": measures.average_precision(is_fraud, scores.served),
            "offline_average_precision": measures.average_precision(is_fraud, scores.offline),
            "served_recall": measures.recall(is_fraud, scores.served_decline),
            "offline_recall": measures.recall(is_fraud, scores.offline_decline),
            "labelled": int(known.sum()),
            "frauds": int((is_fraud[known] == 1).sum()),
        },
        "causes": served_day.causes,
        "lags": served_lags(log, served_day.served, truth),
        "arrivals": served_day.arrivals,
        "thresholds": (limits := skew_gate.thresholds()),
        "anomalies": skew_gate.anomalies(features, served_day.mode, limits),
        "examples": measures.examples(
            log,
            truth,
            served_day.served,
            offline,
            (scores.served, scores.offline),
            (scores.served_decline, scores.offline_decline, scores.consequence),
            features,
        ),
        "histograms": {
            "features": feature_histograms,
            **measures.score_histograms(scores.served, scores.offline),
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
    if report.get("lags"):
        lines += ["", "served age per feature group:"]
        lines += [f"  {line}" for line in sentences(report["lags"])]
    if report.get("arrivals"):
        lines += [f"  arrivals: {arrival_sentence(report['arrivals'])}"]
    found = report.get("anomalies", [])
    n = skew_gate.counts(found)
    lines += ["", f"anomalies: {n['anomalies']} ({n['gating']} gating)"]
    if found:
        lines.append(skew_gate.table(found))
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
