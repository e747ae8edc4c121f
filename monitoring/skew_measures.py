"""The measures of the skew report (monitoring/skew.py), on aligned arrays of served and offline
values: matching, distribution distances, score quality, decision consequences, and the choice of
the few transactions shown in the seed's three tables. No I/O here.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from skewless.schemas import EVENT_ID
from skewless.tasks import realtime_task

REL_TOL = 1e-9
BINS = 20
EPSILON = 1e-4
EXAMPLES = 5  # transactions in the three tables
EXAMPLE_COLUMNS = 6  # features shown in their text and HTML form (the JSON has all)


def matches(served: np.ndarray, offline: np.ndarray) -> np.ndarray:
    """Equal within REL_TOL relative to the larger magnitude (both null is a match)."""
    both_null = np.isnan(served) & np.isnan(offline)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(np.abs(served), np.abs(offline))
        close = np.abs(served - offline) <= REL_TOL * scale
    return both_null | (close & ~np.isnan(served) & ~np.isnan(offline))


def quantile(values: np.ndarray, q: float) -> float | None:
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


def _edges(served: np.ndarray, offline: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Shared quantile bin edges of the pooled non-null values."""
    pooled = np.concatenate([served, offline])
    pooled = pooled[~np.isnan(pooled)]
    if not len(pooled):
        return np.empty(0)
    return np.unique(np.quantile(pooled, np.linspace(0, 1, bins + 1)))


def _distances(p: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    m = (p + q) / 2
    js = 0.0
    for a in (p, q):
        mask = a > 0
        js += 0.5 * float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))
    pe, qe = np.where(p > 0, p, EPSILON), np.where(q > 0, q, EPSILON)
    psi = float(np.sum((pe - qe) * np.log(pe / qe)))
    return max(js, 0.0), psi


def distribution_distances(served: np.ndarray, offline: np.ndarray, bins: int = BINS):
    """(Jensen-Shannon divergence in bits, PSI) of two samples on shared quantile bins of the
    pooled values (nulls in a bin of their own); empty bins count as EPSILON for PSI."""
    edges = _edges(served, offline, bins)
    return _distances(_distribution(served, edges), _distribution(offline, edges))


def feature_stats(served: np.ndarray, offline: np.ndarray) -> tuple[dict, dict]:
    """(the contract's stats, the binned distributions: shares per bin, the last one nulls)."""
    match = matches(served, offline)
    both = ~np.isnan(served) & ~np.isnan(offline)
    diff = np.abs(served[both] - offline[both])
    edges = _edges(served, offline)
    p, q = _distribution(served, edges), _distribution(offline, edges)
    js, psi = _distances(p, q)
    stats = {
        "match_rate": float(match.mean()) if len(match) else None,
        "mean_abs_diff": float(diff.mean()) if len(diff) else None,
        "p95_abs_diff": quantile(diff, 0.95),
        "js_divergence": js,
        "psi": psi,
    }
    histogram = {"edges": edges.tolist(), "served": p.tolist(), "offline": q.tolist()}
    return stats, histogram


def _known(labels: pd.Series, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    known = labels.notna().to_numpy()
    return labels[known].astype(int).to_numpy(), scores[known]


def average_precision(labels: pd.Series, scores: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    y, scores = _known(labels, scores)
    if not len(y) or y.min() == y.max():
        return None
    return float(average_precision_score(y, scores))


def recall(labels: pd.Series, alerts: np.ndarray) -> float | None:
    """Share of the known frauds alerted (declined) (None without frauds)."""
    y, alerts = _known(labels, np.asarray(alerts, dtype=bool))
    caught = alerts[y == 1]
    return float(caught.mean()) if len(caught) else None


def consequences(served_decline, offline_decline, is_fraud: pd.Series) -> np.ndarray:
    """What the served decision did compared with the offline one, per request: ``missed fraud``
    and ``false alert`` (the skew's cost, counted in ``decisions``), ``caught by skew`` and
    ``alert avoided`` (flips that happened to help), ``flipped, label unknown`` or ``none``."""
    fraud, legit = (is_fraud == 1).to_numpy(), (is_fraud == 0).to_numpy()
    flipped = served_decline != offline_decline
    return np.select(
        [
            ~served_decline & offline_decline & fraud,
            served_decline & ~offline_decline & legit,
            served_decline & ~offline_decline & fraud,
            ~served_decline & offline_decline & legit,
            flipped,
        ],
        [
            "missed fraud",
            "false alert",
            "caught by skew",
            "alert avoided",
            "flipped, label unknown",
        ],
        "none",
    )


def _value(value):
    """A JSON-safe value: NaN/NaT/NA become None, timestamps ISO text, numpy scalars Python ones."""
    if value is None or (np.ndim(value) == 0 and not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _value(value.item())
    return value


def examples(log, truth, served, offline, scores, decisions, features) -> dict:
    """The seed's three tables for at most EXAMPLES requests, chosen deterministically: missed
    frauds, then false alerts, then other flipped decisions, then the largest score drift (ties by
    transaction id), one request per transaction. ``features`` lists the columns to show: those that differ in these rows,
    the least matching first, at least three."""
    task = realtime_task()
    served_scores, offline_scores = scores
    served_decline, offline_decline, consequence = decisions
    drift = served_scores - offline_scores
    rank = pd.DataFrame(
        {
            "priority": np.select(
                [consequence == "missed fraud", consequence == "false alert"],
                [0, 1],
                np.where(served_decline != offline_decline, 2, 3),
            ),
            "drift": -np.nan_to_num(np.abs(drift), nan=-1.0),
            "transaction_id": truth[EVENT_ID].to_numpy(),
        }
    )
    ordered = rank.sort_values(list(rank.columns), kind="stable")
    # a transaction served twice (a retried request) is shown once
    rows = ordered.drop_duplicates("transaction_id").index[:EXAMPLES].to_numpy()
    names = list(features)
    differs = {
        n: bool((~matches(served[n].to_numpy()[rows], offline[n].to_numpy()[rows])).any())
        for n in names
    }

    def order(name):
        rate = features[name]["match_rate"]
        return (not differs[name], 1.0 if rate is None else rate, names.index(name))

    ranked = sorted(names, key=order)
    shown = ranked[: max(3, min(EXAMPLE_COLUMNS, sum(differs.values())))]
    training, serving, impact = [], [], []
    for i in rows:
        ids = {key: truth.at[i, key] for key in (EVENT_ID, task.card)}
        training.append(
            {
                **ids,
                "event_timestamp": _value(truth.at[i, "event_timestamp"]),
                **{n: _value(offline.at[i, n]) for n in names},
            }
        )
        serving.append(
            {
                **ids,
                "served_at": _value(log.at[i, "served_at"]),
                **{n: _value(served.at[i, n]) for n in names},
            }
        )
        impact.append(
            {
                **ids,
                task.label: _value(truth.at[i, task.label]),
                "offline_score": _value(offline_scores[i]),
                "served_score": _value(served_scores[i]),
                "score_drift": _value(drift[i]),
                "offline_decision": "decline" if offline_decline[i] else "approve",
                "served_decision": "decline" if served_decline[i] else "approve",
                "consequence": str(consequence[i]),
            }
        )
    return {"features": shown, "training": training, "serving": serving, "impact": impact}


def score_histograms(served_scores: np.ndarray, offline_scores: np.ndarray) -> dict:
    """Both scores on ten-percent bins, and the signed drift (served - offline) on 40 bins."""
    edges = np.linspace(0.0, 1.0, 21)
    drift = served_scores - offline_scores
    drift = drift[~np.isnan(drift)]
    reach = float(np.abs(drift).max()) if len(drift) else 0.0
    reach = reach if reach > 0 else 0.01  # all zero: a narrow range around 0
    drift_edges = np.linspace(-reach, reach, 41)
    return {
        "score": {
            "edges": edges.tolist(),
            "served": np.histogram(served_scores[~np.isnan(served_scores)], edges)[0].tolist(),
            "offline": np.histogram(offline_scores[~np.isnan(offline_scores)], edges)[0].tolist(),
        },
        "score_drift": {
            "edges": drift_edges.tolist(),
            "counts": np.histogram(drift, drift_edges)[0].tolist(),
        },
    }
