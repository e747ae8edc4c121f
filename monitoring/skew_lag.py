"""How stale the served features were, per feature group: the skew report's lag estimate.

Every served request logs, per feature group, the time its values were computed as of
(``feature_timestamps``: the snapshot a materialization wrote, the moment the stream consumer last
pushed the entity, or the request's own time in exact mode). A request at t was served the
group's windows as they stood ``t - as_of`` earlier: its served age. Over the requests whose values
of that group do not match the offline truth, the age is the delay that produced the mismatch, so
its median tells a user "customer windows are served ~N minutes stale" without reading the code.
Requests whose group had no row at all (an entity the online store has never seen) are counted
apart; a mismatch at age 0 (exact mode) is not lag: its cause is elsewhere (late arrival, logic).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from monitoring import skew_measures as measures
from skewless.tasks import realtime_task


def _as_of(stamps: list[dict], group: str) -> pd.Series:
    """Each request's row time of ``group`` (NaT when none), from the log's decoded
    ``feature_timestamps``."""
    series = pd.Series([s.get(group) for s in stamps], dtype="object")
    # ISO 8601 with or without microseconds; a time without an offset is UTC
    return pd.to_datetime(series, format="ISO8601", utc=True).dt.tz_localize(None)


def _summary(seconds: np.ndarray) -> dict:
    if not len(seconds):
        return {"median": None, "p90": None, "max": None}
    return {
        "median": float(np.median(seconds)),
        "p90": float(np.quantile(seconds, 0.9)),
        "max": float(seconds.max()),
    }


def served_lags(log: pd.DataFrame, served: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Per feature group of the realtime task: ``requests``, ``no_row`` (requests served without
    a row of the group), ``mismatching`` (requests with a value of the group that does not match),
    ``age_seconds`` (median, p90, max of t - as_of over the mismatching requests with a row) and
    ``all_age_seconds`` (the same over every request with a row). ``log``, ``served`` and
    ``truth`` are aligned row by row."""
    t = pd.to_datetime(truth["event_timestamp"]).reset_index(drop=True)
    stamps = [json.loads(text or "{}") for text in log["feature_timestamps"]]
    out = {}
    for group in realtime_task().service.groups:
        names = [n for n in group.feature_names if n in served.columns]
        bad = np.zeros(len(log), dtype=bool)
        for name in names:
            bad |= ~measures.matches(served[name].to_numpy(), truth[name].to_numpy())
        as_of = _as_of(stamps, group.name)
        has_row = as_of.notna().to_numpy()
        age = (t - as_of).dt.total_seconds().to_numpy()
        out[group.name] = {
            "requests": len(log),
            "no_row": int((~has_row).sum()),
            "mismatching": int(bad.sum()),
            "age_seconds": _summary(age[bad & has_row]),
            "all_age_seconds": _summary(age[has_row]),
        }
    return out


def duration(seconds: float | None) -> str:
    """A number of seconds in words: 0 s, 42 s, 7.5 min, 3.2 h, 2.1 d."""
    if seconds is None:
        return "-"
    for unit, length in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if abs(seconds) >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} s"


def sentences(lags: dict) -> list[str]:
    """One line per group: how stale its mismatching values were served."""
    lines = []
    for group, lag in lags.items():
        age, n = lag["age_seconds"], lag["mismatching"]
        if not n:
            lines.append(f"{group}: every served value matches")
        elif not age["median"]:
            lines.append(
                f"{group}: {n} mismatching requests served at request time (not lag: see causes)"
            )
        else:
            lines.append(
                f"{group}: served ~{duration(age['median'])} stale (median age of the rows behind "
                f"its {n} mismatching requests; p90 {duration(age['p90'])}, "
                f"max {duration(age['max'])})"
            )
        if lag["no_row"]:
            lines[-1] += f"; {lag['no_row']} requests had no row"
    return lines


def arrivals(con, day, mode: str) -> dict:
    """The served day's events by how late they arrived (``arrival_timestamp`` after
    ``event_timestamp``): ``events``, ``late`` and the ``delay_seconds`` of the late ones (median,
    p90, max). In streaming mode also what the consumer's configuration makes of them (the
    ``SKEWLESS_STREAM_*`` settings; `skewless stream-consumer` flags may differ):
    ``processing_lag_seconds`` (every event is applied that long after it arrives),
    ``allowed_lateness_seconds`` and ``dropped_late``, the events later than that (the consumer
    drops them: arriving in order, an event's arrival is the watermark), with their ``share``."""
    from datetime import datetime, timedelta

    from skewless import settings

    start = datetime.combine(day, datetime.min.time())
    delays = con.execute(
        "select epoch(arrival_timestamp) - epoch(event_timestamp) from stg_raw__transactions"
        " where event_timestamp >= ? and event_timestamp < ?",
        [start, start + timedelta(days=1)],
    ).fetchnumpy()
    delay = next(iter(delays.values())).astype(float) if delays else np.array([])
    late = delay[delay > 0]
    out = {"events": len(delay), "late": len(late), "delay_seconds": _summary(late)}
    if mode == "streaming":
        allowed = float(settings.get("SKEWLESS_STREAM_ALLOWED_LATENESS_SECONDS"))
        dropped = int((delay > allowed).sum())
        out["streaming"] = {
            "processing_lag_seconds": float(settings.get("SKEWLESS_STREAM_LAG_SECONDS")),
            "allowed_lateness_seconds": allowed,
            "dropped_late": dropped,
            "share": dropped / len(delay) if len(delay) else None,
        }
    return out


def arrival_sentence(arrived: dict) -> str:
    """The day's late arrivals in one line, and in streaming mode what the consumer drops."""
    n, late = arrived["events"], arrived["late"]
    line = f"{late:,} of {n:,} events of the day arrived late"
    if late:
        d = arrived["delay_seconds"]
        line += f" (median {duration(d['median'])}, max {duration(d['max'])} after their time)"
    stream = arrived.get("streaming")
    if stream:
        line += (
            f"; the stream consumer applies events {duration(stream['processing_lag_seconds'])}"
            f" after they arrive and drops those over"
            f" {duration(stream['allowed_lateness_seconds'])} late: {stream['dropped_late']:,}"
            f" ({100 * (stream['share'] or 0):.2f}%)"
        )
    return line
