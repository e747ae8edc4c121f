"""Training sources against serving modes: which features a model should learn from, measured on
the scores it would have served.

``compare`` trains one LightGBM per training source on the same window (models/config.yaml, as
`skewless train`): ``warehouse`` (the offline truth), ``arrival`` (the arrival-aware training set:
the events that had arrived before each transaction, what exact mode serves) and
``serving-log:<mode>`` (the vectors one mode served, when it served the training window). Each
model's alert threshold comes from the committed rule on its own source's test rows, as training
derives it. Then each model scores the test window's transactions as each serving mode served them
(the serving log's vectors) and as the offline truth has them (``offline``): average precision,
recall at its threshold, card precision@k per day, ROC AUC. `make bench BENCH=skew` and the demo
print it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from skewless import modes

OFFLINE = "offline"  # the test window's features as the offline truth has them
TASK = "fraud"
# the test frame a source's holdout is, among those loaded for the serving modes
_SERVED_AS = {"warehouse": OFFLINE, **{f"serving-log:{m}": m for m in modes.NAMES}}


def default_sources() -> list[str]:
    return ["warehouse", "arrival", *(f"serving-log:{m}" for m in modes.NAMES)]


def compare(
    cfg,
    train: tuple[datetime, datetime],
    test: tuple[datetime, datetime],
    *,
    sources: Sequence[str] | None = None,
) -> dict:
    """``{"k", "table": {source: {"train_rows", "threshold", <mode>: metrics, ...}}, "skipped":
    {source: why}, "best": {mode: ...}}`` for the realtime task over ``train`` and ``test``
    (event-time windows). A source with no rows in a window (a mode that served no request of
    it) is skipped, saying why; so is a serving mode without served requests in ``test``."""
    from models import datasets, evaluation, training
    from models.config import model_config

    task_config = model_config(cfg, TASK)
    k = int(task_config["top_k_per_day"])
    served, skipped = {OFFLINE: datasets.load_windows(TASK, [test], cfg=cfg)}, {}
    if served[OFFLINE].y.nunique() < 2:
        raise ValueError(f"the test window {test} holds one class only: nothing to rank")
    for mode in modes.NAMES:
        try:
            frame = datasets.load_windows(TASK, [test], cfg=cfg, source=f"serving-log:{mode}")
        except ValueError as exc:  # no request of the test window served in that mode
            skipped[f"mode {mode}"] = str(exc)
            continue
        if frame.y.nunique() < 2:
            skipped[f"mode {mode}"] = "its served requests of the test window hold one class only"
            continue
        served[mode] = frame
    table = {}
    for source in sources or default_sources():
        started = time.perf_counter()
        try:
            rows = datasets.load_windows(TASK, [train], cfg=cfg, source=source)
            holdout = served.get(_SERVED_AS.get(source))  # loaded above
            if holdout is None:
                holdout = datasets.load_windows(TASK, [test], cfg=cfg, source=source)
        except ValueError as exc:
            skipped[source] = str(exc)
            continue
        booster = training.fit(rows, task_config)
        threshold, _ = evaluation.derive_threshold(
            task_config,
            datasets.predict(booster, holdout.X),
            holdout.keys["event_timestamp"],
        )
        row = {"train_rows": len(rows), "threshold": threshold}
        for mode, frame in served.items():
            metrics = evaluation.metrics(
                frame.y.to_numpy(),
                datasets.predict(booster, frame.X),
                frame.keys["event_timestamp"],
                threshold=threshold,
                k=k,
                cards=frame.keys["customer_id"],
            )
            row[mode] = {
                "rows": len(frame),
                **{
                    name: round(metrics[name], 4)
                    for name in (
                        "average_precision",
                        "recall_at_threshold",
                        "card_precision_at_k",
                        "roc_auc",
                    )
                },
            }
        row["seconds"] = round(time.perf_counter() - started, 1)
        table[source] = row
    out = {"k": k, "modes": [m for m in served if m != OFFLINE] + [OFFLINE], "table": table}
    out["skipped"] = skipped
    out["best"] = best(out)
    return out


def best(result: dict) -> dict:
    """Per serving mode: the source whose model has the highest average precision on it, and by
    how much it beats the warehouse (offline truth) model there."""
    table, out = result["table"], {}
    if not table:
        return out
    for mode in result["modes"]:
        top = max(table, key=lambda s: table[s][mode]["average_precision"])
        ap = table[top][mode]["average_precision"]
        base = table["warehouse"][mode]["average_precision"] if "warehouse" in table else ap
        out[mode] = {"source": top, "average_precision": ap, "over_warehouse": round(ap - base, 4)}
    return out


def format_table(result: dict) -> str:
    """The table (AP / recall at the source's threshold / card precision@k per source and mode),
    the best source per mode, and what was skipped."""
    columns = result["modes"]
    lines = [
        f"AP / recall at the source's threshold / card precision@{result['k']}, by serving mode",
        f"{'training source':<26}" + "".join(f"{m:>22}" for m in columns),
    ]
    for source, row in result["table"].items():
        cells = "".join(
            f"{row[m]['average_precision']:>10.3f}{row[m]['recall_at_threshold']:>6.2f}"
            f"{row[m]['card_precision_at_k']:>6.2f}"
            for m in columns
        )
        lines.append(f"{source:<26}{cells}")
    lines.append("best source per serving mode (AP, and against the warehouse model):")
    for mode, row in result["best"].items():
        lines.append(
            f"  {mode:<13} {row['source']:<24} AP {row['average_precision']:.3f}"
            f" ({row['over_warehouse']:+.3f})"
        )
    for what, why in result["skipped"].items():
        lines.append(f"  skipped {what}: {why.removeprefix(f'source {what}: ')}")
    return "\n".join(lines)
