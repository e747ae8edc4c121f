"""Holdout metrics and plots: ROC AUC, average precision, card precision@k and precision@k per day,
recall at the alert threshold, the threshold rule; PR/ROC curves and feature importance as
matplotlib figures (no pyplot, no display)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def precision_at_k_by_day(y, scores, timestamps, k: int) -> dict[str, float]:
    """Per day: the share of frauds among the k highest scores (all of the day's rows if fewer)."""
    frame = pd.DataFrame(
        {"y": np.asarray(y), "score": np.asarray(scores), "day": pd.to_datetime(timestamps).values}
    )
    frame["day"] = frame["day"].dt.floor("D")
    out = {}
    for day, rows in frame.groupby("day", sort=True):
        top = rows.sort_values("score", ascending=False, kind="stable").head(k)
        out[day.date().isoformat()] = float(top["y"].mean())
    return out


def card_precision_at_k_by_day(y, scores, timestamps, cards, k: int) -> dict[str, float]:
    """Per day, as fraud investigators work: each card scores its highest transaction of the day,
    the k highest cards are reviewed, and the day's precision is the share of them with a fraud
    that day (divided by k, even on a day with fewer cards). A card found compromised is blocked:
    it leaves the following days' rankings. This is "card precision top-k" of the Reproducible
    Machine Learning for Credit Card Fraud Detection handbook (ch. 4.2)."""
    frame = pd.DataFrame(
        {
            "y": np.asarray(y),
            "score": np.asarray(scores),
            "day": pd.to_datetime(timestamps).values,
            "card": np.asarray(cards),
        }
    )
    frame["day"] = frame["day"].dt.floor("D")
    out, detected = {}, set()
    for day, rows in frame.groupby("day", sort=True):
        rows = rows[~rows["card"].isin(detected)]
        per_card = rows.groupby("card", sort=True).agg(score=("score", "max"), y=("y", "max"))
        top = per_card.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.index[top["y"] == 1]
        out[day.date().isoformat()] = len(found) / k
        detected.update(found)
    return out


def capacity_threshold(scores, timestamps, alerts_per_day: int) -> float:
    """The score at which the expected alerts per day equal ``alerts_per_day``: the
    (alerts_per_day x days)-th highest score of the holdout (every score if there are fewer)."""
    scores = np.sort(np.asarray(scores, dtype="float64"))[::-1]
    if not len(scores):
        raise ValueError("no holdout scores to derive a threshold from")
    days = pd.DatetimeIndex(pd.to_datetime(timestamps)).floor("D").nunique()
    return float(scores[min(alerts_per_day * days, len(scores)) - 1])


def derive_threshold(task_config: dict, scores, timestamps) -> tuple[float, str]:
    """The alert threshold by the task's committed rule, and a description of the rule.

    ``alert_threshold`` in models/config.yaml is either a number (a fixed threshold) or
    ``{rule: daily_capacity, alerts_per_day: N}``: the score at which the holdout's alerts per day
    equal the investigators' capacity (``alerts_per_day``, default ``top_k_per_day``)."""
    from models.config import fixed_threshold

    fixed = fixed_threshold(task_config)
    if fixed is not None:
        return fixed, "fixed"
    setting = task_config["alert_threshold"]
    rule = setting.get("rule") if isinstance(setting, dict) else None
    if rule != "daily_capacity":
        raise ValueError(
            f"alert_threshold: expected a number or {{rule: daily_capacity}}, got {setting!r}"
        )
    per_day = int(setting.get("alerts_per_day", task_config["top_k_per_day"]))
    if per_day <= 0:
        raise ValueError(f"alert_threshold.alerts_per_day must be positive, got {per_day}")
    return capacity_threshold(scores, timestamps, per_day), f"daily_capacity({per_day})"


def metrics(y, scores, timestamps, *, threshold: float, k: int, cards=None) -> dict:
    """The holdout metrics; ``cards`` (the card / customer of each row) adds card precision@k."""
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype="float64")
    alerts = scores >= threshold
    per_day = precision_at_k_by_day(y, scores, timestamps, k)
    positives = int(y.sum())
    card_precision = None
    if cards is not None:
        by_day = card_precision_at_k_by_day(y, scores, timestamps, cards, k)
        card_precision = float(np.mean(list(by_day.values())))
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "card_precision_at_k": card_precision,
        "precision_at_k_per_day": float(np.mean(list(per_day.values()))),
        "recall_at_threshold": float(alerts[y == 1].mean()) if positives else None,
        "precision_at_threshold": float(y[alerts].mean()) if alerts.any() else None,
        "alerts_per_day": float(alerts.sum() / len(per_day)),
        "log_loss": float(log_loss(y, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "k": k,
        "threshold": threshold,
        "rows": len(y),
        "positives": positives,
        "positive_rate": float(y.mean()),
        "days": len(per_day),
    }


def figures(booster, y, scores) -> dict:
    """PR curve, ROC curve and gain importance of the holdout, as matplotlib Figures."""
    from matplotlib.figure import Figure
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    out = {}
    precision, recall, _ = precision_recall_curve(y, scores)
    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.subplots()
    ax.step(recall, precision, where="post")
    ax.axhline(float(np.mean(y)), color="grey", linestyle=":", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"Precision-recall (AP {average_precision_score(y, scores):.3f})")
    ax.legend(loc="upper right")
    fig.tight_layout()
    out["pr_curve"] = fig

    fpr, tpr, _ = roc_curve(y, scores)
    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"ROC (AUC {roc_auc_score(y, scores):.3f})")
    fig.tight_layout()
    out["roc_curve"] = fig

    names = booster.feature_name()
    gain = booster.feature_importance(importance_type="gain")
    order = np.argsort(gain)
    fig = Figure(figsize=(6, 0.25 * len(names) + 1), dpi=100)
    ax = fig.subplots()
    ax.barh([names[i] for i in order], gain[order])
    ax.set(xlabel="total gain")
    ax.set_title("Feature importance (gain)")
    fig.tight_layout()
    out["feature_importance"] = fig
    return out
