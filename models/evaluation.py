"""Holdout metrics and plots: ROC AUC, average precision, precision@k per day, recall at the alert
threshold; PR/ROC curves and feature importance as matplotlib figures (no pyplot, no display)."""

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


def metrics(y, scores, timestamps, *, threshold: float, k: int) -> dict:
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype="float64")
    alerts = scores >= threshold
    per_day = precision_at_k_by_day(y, scores, timestamps, k)
    positives = int(y.sum())
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
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
