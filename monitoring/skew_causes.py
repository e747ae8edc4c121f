"""The causes of the skew report's (monitoring/skew.py) mismatching feature values.

Every served feature value that does not match the offline truth is attributed to one cause:

- ``late_arrival``: an event of the feature's entity with event time in the feature's window before
  t arrived after the request was served (arrival is not event time);
- ``staleness``: otherwise, when the mode serves a snapshot or lagging state (materialized,
  streaming);
- ``logic``: otherwise (exact mode should match the offline truth exactly).

The request's served time is its transaction's ``arrival_timestamp`` (``skewless replay`` sends
each request when its transaction arrives; the log's ``served_at`` is wall-clock time), or the
log's ``served_at`` when the warehouse does not know the transaction.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from monitoring import skew_measures as measures
from skewless import modes
from skewless.features import AMOUNT_RATIOS
from skewless.schemas import EVENT_ID
from skewless.tasks import realtime_task


def feature_scope() -> dict[str, tuple[str, timedelta, timedelta]]:
    """feature -> (entity key, start, end): it depends on the events in [t - start, t - end)."""
    scope = {}
    for group in realtime_task().service.groups:
        for aggregate, window, name in group.window_features():
            start, end = aggregate.bounds(window) if window else (group.horizon, timedelta(0))
            scope[name] = (group.entity.join_key, start, end)
    for ratio in AMOUNT_RATIOS:
        scope[ratio.name] = scope[ratio.feature]
    return scope


def late_arrivals(con, mismatches: pd.DataFrame) -> np.ndarray:
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


def mismatches(log, served, truth, names: list[str]) -> pd.DataFrame | None:
    """One row per mismatching feature value (feature, its entity and window, the transaction, t
    and the served time), in the order of ``names``; None when every value matches. ``log``,
    ``served`` and ``truth`` are aligned row by row."""
    scope = feature_scope()
    served_time = truth["arrival_timestamp"].fillna(log["served_at"])
    parts = []
    for name in names:
        bad = ~measures.matches(served[name].to_numpy(), truth[name].to_numpy())
        if not bad.any():
            continue
        key, start, end = scope.get(name, (None, timedelta(0), timedelta(0)))
        parts.append(
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
    return pd.concat(parts, ignore_index=True) if parts else None


def mismatch_causes(con, mode: str, log, served, truth, names: list[str]) -> dict[str, int]:
    """The number of mismatching feature values per cause (``late_arrival``, ``staleness``,
    ``logic``); ``con`` is the warehouse, which knows when each event arrived."""
    causes = {"late_arrival": 0, "staleness": 0, "logic": 0}
    found = mismatches(log, served, truth, names)
    if found is not None:
        found["row"] = np.arange(len(found))
        late = late_arrivals(con, found)
        causes["late_arrival"] = int(late.sum())
        other = "staleness" if modes.mode(mode).stale else "logic"
        causes[other] = int((~late).sum())
    return causes
