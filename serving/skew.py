"""The skew report (DESIGN section 6): what was served against the offline truth.

Joins ``serving.serving_log`` (one mode, one event day) to the per-transaction feature rows dbt
computed for the same transactions (``customer_transaction_windows`` and
``merchant_transaction_windows``, ``not is_snapshot``) plus the request-time features
(``request_features_frame``), then measures per feature (match rate, absolute differences,
Jensen-Shannon divergence and PSI on shared quantile bins), per score (the served model version's
booster applied to the offline vector), per decision at the fraud alert threshold, and the
average precision of both scores. Every mismatching feature value is attributed to a cause:

- ``late_arrival``: an event of the feature's entity with event time in the feature's window before
  t arrived after the request was served (DESIGN section 8, "Arrival is not event time");
- ``staleness``: otherwise, when the mode serves a snapshot or lagging state (materialized,
  streaming);
- ``logic``: otherwise (exact mode should match the offline truth exactly).

The request's served time is its transaction's ``arrival_timestamp`` (``skewless replay`` sends
each request when its transaction arrives; the log's ``served_at`` is wall-clock time), or the
log's ``served_at`` when the warehouse does not know the transaction.

The warehouse is only opened read-only.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from serving.flush import TABLE
from skewless.features import (
    CUSTOMER_TRANSACTION_WINDOWS,
    MERCHANT_TRANSACTION_WINDOWS,
    request_features_frame,
    window_length,
)

TASK = "fraud"
REL_TOL = 1e-9
BINS = 20
EPSILON = 1e-4
STALE_MODES = ("materialized", "streaming")
GROUPS = (CUSTOMER_TRANSACTION_WINDOWS, MERCHANT_TRANSACTION_WINDOWS)


class SkewReportError(RuntimeError):
    """Nothing to report on: no serving log (or no rows for the day / mode asked for)."""


_EMPTY = "run skewless replay and skewless flush-log first"


# -- loading --------------------------------------------------------------------------------------


def _served_rows(con, day: date | None, mode: str | None) -> tuple[pd.DataFrame, str, date]:
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
    rows = con.execute(
        f"select * from {TABLE} where mode = ? and event_timestamp::date = ? "
        "order by event_timestamp, request_id",
        [mode, day],
    ).fetchdf()
    if rows.empty:
        raise SkewReportError(f"no served requests in mode {mode!r} on {day} in {TABLE}: {_EMPTY}")
    return rows, mode, day


def offline_truth(con, transaction_ids) -> pd.DataFrame:
    """The offline feature rows (dbt per-transaction rows + request features) of the given
    transactions, with customer_id, merchant_id, event_timestamp, arrival_timestamp and is_fraud;
    one row per transaction id found, indexed by transaction_id."""
    from models.datasets import feature_columns

    customer = [f"c.{n}" for n in CUSTOMER_TRANSACTION_WINDOWS.feature_names]
    merchant = [f"m.{n}" for n in MERCHANT_TRANSACTION_WINDOWS.feature_names]
    ids = pd.DataFrame({"transaction_id": pd.Series(list(transaction_ids), dtype="object")})
    con.register("skew_ids", ids)
    try:
        rows = con.execute(
            f"""
            select t.transaction_id, t.customer_id, t.merchant_id, t.event_timestamp,
                t.arrival_timestamp, t.amount, t.is_fraud, {", ".join(customer + merchant)}
            from stg_raw__transactions as t
            join (select distinct transaction_id from skew_ids) as i using (transaction_id)
            join customer_transaction_windows as c
                on c.transaction_id = t.transaction_id and not c.is_snapshot
            join merchant_transaction_windows as m
                on m.transaction_id = t.transaction_id and not m.is_snapshot
            order by t.event_timestamp, t.transaction_id
            """
        ).fetchdf()
    finally:
        con.unregister("skew_ids")
    request = request_features_frame(
        rows["amount"], rows["event_timestamp"], rows["customer_amount_avg_7d"]
    )
    names = feature_columns(TASK)
    features = pd.concat([rows.drop(columns=["amount"]), request], axis=1)
    keys = ["transaction_id", "customer_id", "merchant_id", "event_timestamp"]
    keys += ["arrival_timestamp", "is_fraud"]
    out = features[keys + names].copy()
    out[names] = out[names].astype("float64")
    return out.set_index("transaction_id", drop=False)


def _load_boosters(cfg, versions) -> dict:
    from models import registry
    from models.config import model_config

    name = model_config(cfg, TASK)["registered_model"]
    mlflow, _ = registry.connect(cfg)
    return {v: registry.load_version(mlflow, name, str(v)) for v in versions}


# -- measures -------------------------------------------------------------------------------------


def _matches(served: np.ndarray, offline: np.ndarray) -> np.ndarray:
    """Equal within REL_TOL relative to the larger magnitude (both null is a match)."""
    both_null = np.isnan(served) & np.isnan(offline)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(np.abs(served), np.abs(offline))
        close = np.abs(served - offline) <= REL_TOL * scale
    return both_null | (close & ~np.isnan(served) & ~np.isnan(offline))


def _quantile(values: np.ndarray, q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


def _distribution(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per shared bin, plus a last bin for nulls."""
    present = values[~np.isnan(values)]
    if len(edges) > 1:
        counts = np.histogram(np.clip(present, edges[0], edges[-1]), bins=edges)[0]
    else:
        counts = np.array([len(present)])
    counts = np.append(counts, np.isnan(values).sum()).astype("float64")
    total = counts.sum()
    return counts / total if total else counts


def distribution_distances(served: np.ndarray, offline: np.ndarray, bins: int = BINS):
    """(Jensen-Shannon divergence in bits, PSI) of two samples on shared quantile bins of the
    pooled values (nulls in a bin of their own); empty bins count as EPSILON for PSI."""
    pooled = np.concatenate([served, offline])
    pooled = pooled[~np.isnan(pooled)]
    edges = np.unique(np.quantile(pooled, np.linspace(0, 1, bins + 1))) if len(pooled) else []
    p, q = _distribution(served, np.asarray(edges)), _distribution(offline, np.asarray(edges))
    m = (p + q) / 2
    js = 0.0
    for a in (p, q):
        mask = a > 0
        js += 0.5 * float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))
    pe, qe = np.where(p > 0, p, EPSILON), np.where(q > 0, q, EPSILON)
    psi = float(np.sum((pe - qe) * np.log(pe / qe)))
    return max(js, 0.0), psi


def _feature_stats(served: np.ndarray, offline: np.ndarray) -> dict:
    match = _matches(served, offline)
    both = ~np.isnan(served) & ~np.isnan(offline)
    diff = np.abs(served[both] - offline[both])
    js, psi = distribution_distances(served, offline)
    return {
        "match_rate": float(match.mean()) if len(match) else None,
        "mean_abs_diff": float(diff.mean()) if len(diff) else None,
        "p95_abs_diff": _quantile(diff, 0.95),
        "js_divergence": js,
        "psi": psi,
    }


def _average_precision(labels: pd.Series, scores: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    known = labels.notna().to_numpy()
    y = labels[known].astype(int).to_numpy()
    if not len(y) or y.min() == y.max():
        return None
    return float(average_precision_score(y, scores[known]))


def _feature_scope() -> dict[str, tuple[str, timedelta]]:
    """feature -> (entity key, window whose events it depends on)."""
    scope = {}
    for group in GROUPS:
        longest = max(window_length(w) for w in group.windows)
        for _, window, name in group.window_features():
            scope[name] = (group.entity.join_key, window_length(window) if window else longest)
    scope["amount_to_avg_7d"] = ("customer_id", window_length("7d"))
    return scope


def _late_arrivals(con, mismatches: pd.DataFrame) -> np.ndarray:
    """For each mismatch (entity_key, entity_id, transaction_id, t, window_seconds, served_time):
    whether an event of that entity in [t - window, t) arrived after the served time."""
    flags = np.zeros(len(mismatches), dtype=bool)
    for key in ("customer_id", "merchant_id"):
        part = mismatches[mismatches["entity_key"] == key]
        if part.empty:
            continue
        frame = part[["row", "entity_id", "transaction_id", "t", "window_seconds", "served_time"]]
        con.register("skew_mismatches", frame.reset_index(drop=True))
        try:
            late = con.execute(
                f"""
                select distinct x.row
                from skew_mismatches as x
                join stg_raw__transactions as e
                    on e.{key} = x.entity_id
                    and e.transaction_id <> x.transaction_id
                    and e.event_timestamp < x.t
                    and e.event_timestamp >= x.t - to_seconds(x.window_seconds)
                    and e.arrival_timestamp > x.served_time
                """
            ).fetchall()
        finally:
            con.unregister("skew_mismatches")
        flags[[r for (r,) in late]] = True
    return flags


# -- the report -----------------------------------------------------------------------------------


def skew_report(day: date | None = None, *, mode: str | None = None, cfg=None) -> dict:
    """The skew report of one served day and mode (defaults: the mode of the most logged requests,
    then its last served event day) as the JSON contract of DESIGN section 6 (keys ``requests``,
    ``mode``, ``features``, ``score``, ``decisions``, ``quality``, ``causes``)."""
    from models import datasets
    from models.config import model_config
    from skewless import settings, warehouse

    cfg = cfg or settings.load()
    if isinstance(day, datetime):
        day = day.date()
    threshold = float(model_config(cfg, TASK)["alert_threshold"])
    names = datasets.feature_columns(TASK)

    if not cfg.warehouse_path.exists():
        raise SkewReportError(f"no warehouse at {cfg.warehouse_path}: {_EMPTY}")
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        log, mode, day = _served_rows(con, day, mode)
        truth = offline_truth(con, log["transaction_id"])
        log = log[log["transaction_id"].isin(truth.index)].reset_index(drop=True)
        truth = truth.loc[log["transaction_id"]].reset_index(drop=True)

        served = pd.DataFrame(
            [json.loads(text) if text else {} for text in log["features"]], index=log.index
        )
        served = served.reindex(columns=names).astype("float64")
        offline = truth[names]

        features, mismatch_parts = {}, []
        scope = _feature_scope()
        served_time = truth["arrival_timestamp"].fillna(log["served_at"])
        for name in names:
            s, o = served[name].to_numpy(), offline[name].to_numpy()
            features[name] = _feature_stats(s, o)
            bad = ~_matches(s, o)
            if bad.any():
                key, window = scope.get(name, (None, timedelta(0)))
                mismatch_parts.append(
                    pd.DataFrame(
                        {
                            "feature": name,
                            "entity_key": key,
                            "entity_id": truth[key][bad].to_numpy() if key else None,
                            "transaction_id": truth["transaction_id"][bad].to_numpy(),
                            "t": truth["event_timestamp"][bad].to_numpy(),
                            "window_seconds": window.total_seconds(),
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
            other = "staleness" if mode in STALE_MODES else "logic"
            causes[other] = int((~late).sum())
    finally:
        con.close()

    offline_scores = np.full(len(log), np.nan)
    boosters = _load_boosters(cfg, sorted(log["model_version"].dropna().unique()))
    for version, booster in boosters.items():
        rows = (log["model_version"] == version).to_numpy()
        offline_scores[rows] = datasets.predict(booster, offline[rows])
    served_scores = log["fraud_probability"].to_numpy(dtype="float64")
    drift = np.abs(served_scores - offline_scores)
    drift = drift[~np.isnan(drift)]

    served_decline = (log["decision"] == "decline").to_numpy()
    offline_decline = offline_scores >= threshold
    is_fraud = truth["is_fraud"]
    fraud = (is_fraud == 1).to_numpy()
    legit = (is_fraud == 0).to_numpy()
    return {
        "requests": len(log),
        "mode": mode,
        "features": features,
        "score": {
            "mean_abs_drift": float(drift.mean()) if len(drift) else None,
            "p95_abs_drift": _quantile(drift, 0.95),
        },
        "decisions": {
            "flipped": int((served_decline != offline_decline).sum()),
            "missed_frauds": int((~served_decline & offline_decline & fraud).sum()),
            "false_alerts": int((served_decline & ~offline_decline & legit).sum()),
        },
        "quality": {
            "served_average_precision": _average_precision(is_fraud, served_scores),
            "offline_average_precision": _average_precision(is_fraud, offline_scores),
        },
        "causes": causes,
    }


def format_table(report: dict) -> str:
    """A short readable summary of a report (for the CLI without --json)."""

    def num(value, spec=".4f"):
        return (
            "-"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else (format(value, spec))
        )

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
        f"mismatch causes: late arrival {c['late_arrival']}, staleness {c['staleness']}, "
        f"logic {c['logic']}",
    ]
    return "\n".join(lines)
