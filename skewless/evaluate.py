"""Evaluates the feature declaration in plain Python: the sidecar's online computation.

Given one entity's events and a time t, computes the features of a group exactly as the dbt models
do (a property test holds the two equal). Events are mappings with at least ``event_timestamp`` and
the columns the group's aggregates read; label-based aggregates also need ``label_timestamp``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from skewless.features import Agg, FeatureGroup


def stage_event(raw: Mapping, label_delay: timedelta) -> dict:
    """Fills the raw contract's defaults (arrival: the event time; label: event time + delay)
    the way stg_raw__transactions does."""
    event = dict(raw)
    event["arrival_timestamp"] = raw.get("arrival_timestamp") or raw["event_timestamp"]
    event["label_timestamp"] = raw.get("label_timestamp") or raw["event_timestamp"] + label_delay
    return event


def _aggregate(agg: Agg, column: str | None, events: Sequence[Mapping], at: datetime, since=None):
    if agg is Agg.COUNT:
        return len(events)
    values = [e[column] for e in events] if column else []
    if agg is Agg.SUM:
        return float(sum(values)) if values else 0.0
    if agg is Agg.AVG:
        return float(sum(values)) / len(values) if values else None
    if agg is Agg.COUNT_DISTINCT:
        return len({v for v in values if v is not None})
    if agg is Agg.LABELED_RATE:
        since = since or datetime.min
        known = [
            e[column]
            for e in events
            if e[column] is not None and since <= e["label_timestamp"] <= at
        ]
        return sum(known) / len(known) if known else None
    raise ValueError(f"aggregation {agg} has no window")  # pragma: no cover


def evaluate(group: FeatureGroup, events: Iterable[Mapping], at: datetime) -> dict:
    """Feature values of ``group`` for one entity at time ``at`` (events at ``at`` are excluded)."""
    before = sorted((e for e in events if e["event_timestamp"] < at), key=_event_time)
    values: dict = {}
    for aggregate, window, name in group.window_features():
        if aggregate.agg is Agg.SECONDS_SINCE_LAST:
            values[name] = (at - before[-1]["event_timestamp"]).total_seconds() if before else None
            continue
        start, end = aggregate.event_range(window, at)
        if aggregate.label_time:  # the labels that became known in [start, at], of events before
            within = aggregate.label_within  # at and labelled at most this long after them
            labelled = [e for e in before if _label_within(e, within)]
            values[name] = _aggregate(aggregate.agg, aggregate.column, labelled, at, start)
            continue
        in_window = [e for e in before if start <= e["event_timestamp"] < end]
        values[name] = _aggregate(aggregate.agg, aggregate.column, in_window, at)
    for ratio in group.ratios:
        numerator, denominator = values[ratio.numerator], values[ratio.denominator]
        values[ratio.name] = (
            None if numerator is None or not denominator else numerator / denominator * ratio.scale
        )
    return values


def _label_within(event: Mapping, within: timedelta) -> bool:
    label_time = event.get("label_timestamp")
    return label_time is not None and label_time <= event["event_timestamp"] + within


def _event_time(event: Mapping) -> datetime:
    return event["event_timestamp"]
