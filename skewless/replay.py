"""Replays one day of the warehouse's transactions against a running sidecar, over HTTP.

``replay(day)`` (``skewless replay``) reads the day's transactions from ``stg_raw__transactions``
(read-only; DuckDB has one writer) and POSTs each to the realtime task's route (fraud:
``{url}/v1/fraud/score``) on one keep-alive session, optionally paced to ``rate`` requests per
second. Several URLs (sidecar replicas on the same Redis) take the requests in turn, as a
round-robin load balancer would.

Arrival is not event time: the feed is ordered by ``arrival_timestamp``. A
transaction that reached the system late is sent when it arrives, and its request carries its
``event_timestamp``. With ``bootstrap=True`` the exact-mode state (in the sidecar's Redis) is first
loaded with what had arrived before the day (``history_frame(by="arrival")``, with only the labels
known by then), and during the day the replay feeds it, in time order between requests:

- labels that become known (``label_timestamp`` in the day, or a late feed's end) through
  ``ExactState.set_label`` (a label of an event that arrived before) - never before the
  transaction itself has arrived;
- earlier days' transactions that arrive during the day (late events, not scored: they are not the
  day's transactions) through ``ExactState.add_event`` at their arrival.

The scored transactions themselves enter the state through the sidecar (``RECORD_EVENTS``).

The same labels and arriving events go to the event stream ``skewless:{stream}:events`` (in the
same round trip as the state update), with their arrival time, for the streaming consumer
(``serving/stream_consumer.py``); the sidecar adds the scored transactions. Before the day, a
``reset`` entry asks the consumer to restart from the same history; in ``streaming`` mode the
replay waits (``stream_timeout`` seconds) until the consumer has done it, so no request sees the
state of an earlier run.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from skewless import modes
from skewless.schemas import RAW_TRANSACTION_COLUMNS, event_from_row, request_body
from skewless.tasks import realtime_task

DEFAULT_URL = "http://127.0.0.1:8000"
_COLUMNS = ", ".join(RAW_TRANSACTION_COLUMNS)  # every staged column
# Order of timeline items at the same instant: labels known by then, arriving events, requests,
# then labels held back until their own transaction had arrived.
_LABEL, _EVENT, _REQUEST, _LATE_LABEL = 0, 1, 2, 3


class ReplayError(RuntimeError):
    """The replay cannot run (sidecar unreachable, no transactions that day, bad argument)."""


def day_frames(cfg, day: date):
    """(feed, arrivals): the day's transactions (event time in the day) and earlier transactions
    that arrive between the day's start and its last arrival, both from the warehouse, read-only."""
    from skewless import warehouse

    start = datetime.combine(day, datetime.min.time())
    end = start + timedelta(days=1)
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        feed = con.execute(
            f"select {_COLUMNS} from stg_raw__transactions "
            "where event_timestamp >= $start and event_timestamp < $end "
            "order by arrival_timestamp, event_timestamp, transaction_id",
            {"start": start, "end": end},
        ).fetchdf()
        feed_end = feed["arrival_timestamp"].max() if len(feed) else end
        arrivals = con.execute(
            f"select {_COLUMNS} from stg_raw__transactions "
            "where event_timestamp < $start and arrival_timestamp >= $start "
            "and arrival_timestamp <= $feed_end "
            "order by arrival_timestamp, event_timestamp, transaction_id",
            {"start": start, "feed_end": feed_end.to_pydatetime()},
        ).fetchdf()
    finally:
        con.close()
    return feed, arrivals


def _labels(frame, arrived, start, until, timeline) -> None:
    """Timeline items for the labels of ``frame`` that become known in [start, until]; a label
    waits for its transaction's arrival (``arrived``: a column, or None when already in state)."""
    import pandas as pd

    for row in frame.itertuples(index=False):
        if pd.isna(row.is_fraud) or pd.isna(row.label_timestamp):
            continue
        known = row.label_timestamp
        if not (start <= known <= until):
            continue
        kind = _LABEL
        at = getattr(row, arrived) if arrived else None
        if at is not None and at >= known:
            known, kind = at, _LATE_LABEL
        timeline.append((known, kind, len(timeline), event_from_row(row, label=True)))


def build_timeline(feed, arrivals, history, day: date) -> list[tuple]:
    """(time, kind, seq, payload) items in feed order: requests at arrival, arriving earlier
    events, and labels as they become known."""
    start = datetime.combine(day, datetime.min.time())
    until = max(feed["arrival_timestamp"].max(), start + timedelta(days=1))
    timeline: list[tuple] = []
    for row in feed.itertuples(index=False):
        timeline.append((row.arrival_timestamp, _REQUEST, len(timeline), row))
    for row in arrivals.itertuples(index=False):
        timeline.append(
            (row.arrival_timestamp, _EVENT, len(timeline), event_from_row(row, label=False))
        )
    _labels(feed, "arrival_timestamp", start, until, timeline)
    _labels(arrivals, "arrival_timestamp", start, until, timeline)
    if history is not None:
        _labels(history, None, start, until, timeline)
    timeline.sort(key=lambda item: item[:3])
    return timeline


def bootstrap_state(state, cfg, day: date):
    """Loads what had arrived before the day, with the labels known by then. Returns (summary,
    history frame)."""
    start = datetime.combine(day, datetime.min.time())
    from serving.state import known_history

    history, loaded = known_history(cfg, start)
    summary = state.bootstrap(loaded, as_of=start)
    return summary, history


def reset_stream(client, day: date, *, wait: float | None) -> str:
    """Writes the day's reset entry to the event stream; with ``wait``, waits that many seconds
    for the streaming consumer to have applied it. Returns the entry id."""
    from skewless import stream

    start = datetime.combine(day, datetime.min.time())
    entry_id = client.execute_command(*stream.reset_command(start))
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    if wait is None:
        return entry_id
    deadline = time.monotonic() + wait
    while True:
        done = client.hget(stream.STATUS_KEY, "reset_id")
        if done is not None and done.decode() == entry_id:
            return entry_id
        if time.monotonic() > deadline:
            raise ReplayError(
                f"the stream consumer did not apply the reset of {day.isoformat()} within "
                f"{wait:g}s (no reset_id {entry_id} in {stream.STATUS_KEY}): is "
                "`skewless stream-consumer` running on the sidecar's Redis?"
            )
        time.sleep(0.1)


def _py(value) -> datetime:
    return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value


def _body(row, mode: str | None) -> bytes:
    body = request_body(row)
    if mode is not None:
        body["mode"] = mode
    return json.dumps(body, separators=(",", ":")).encode()


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))
    return round(ordered[index], 3)


def _unreachable(url: str, exc: Exception) -> ReplayError:
    return ReplayError(
        f"sidecar not reachable at {url} ({type(exc).__name__}): start it with `skewless serve` "
        "or pass --url"
    )


def _check_args(mode: str | None, rate: float | None, url: str | Sequence[str]) -> list[str]:
    """Validates ``mode`` and ``rate``; returns the sidecar URLs without a trailing slash."""
    if mode is not None and mode not in modes.NAMES:
        raise ReplayError(f"mode={mode!r}: expected one of {list(modes.NAMES)}")
    if rate is not None and rate <= 0:
        raise ReplayError(f"rate={rate}: expected requests per second > 0")
    urls = [u.rstrip("/") for u in ([url] if isinstance(url, str) else url)]
    if not urls:
        raise ReplayError("url: expected at least one sidecar URL")
    return urls


def _check_sidecars(session, urls: list[str], mode: str | None, timeout: float) -> str | None:
    """Checks every replica's health; returns ``mode``, or when None the first sidecar's mode
    (None if it is not ready)."""
    import requests

    for replica in urls:
        try:
            session.get(f"{replica}/healthz", timeout=timeout).raise_for_status()
        except requests.ConnectionError as exc:
            raise _unreachable(replica, exc) from None
        except requests.RequestException as exc:
            raise ReplayError(f"sidecar at {replica} is not healthy: {exc}") from None
    if mode is not None:
        return mode
    ready = session.get(f"{urls[0]}/readyz", timeout=timeout)
    return ready.json().get("mode") if ready.status_code == 200 else None


def _connect_state(cfg, redis_url: str | None):
    """The exact-mode state on the sidecar's Redis."""
    from serving.state import ExactState
    from skewless import redis_server

    client = redis_server.connect(
        redis_server.serving_url(cfg, redis_url), cluster=cfg.redis_cluster
    )
    return ExactState(client)


def _bootstrap(state, cfg, day: date, served_mode: str | None, stream_timeout: float):
    """Loads the state with what arrived before the day and resets the event stream (waiting for
    the consumer in a mode that reads it). Returns (summary, history frame)."""
    boot_summary, history = bootstrap_state(state, cfg, day)
    wait = stream_timeout if modes.mode(served_mode).consumer else None
    boot_summary["stream_reset"] = reset_stream(state.redis, day, wait=wait)
    return boot_summary, history


@dataclass
class _Tally:
    """What the request loop counted."""

    statuses: Counter = field(default_factory=Counter)
    served_modes: Counter = field(default_factory=Counter)
    ok_per_url: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    labels: int = 0
    events: int = 0
    sent: int = 0
    seconds: float = 0.0


def _run(session, timeline, state, urls, mode, rate, timeout) -> _Tally:
    """Feeds labels and arriving events to the state and stream, and POSTs the requests, in
    timeline order, paced to ``rate``."""
    import requests

    from skewless import stream

    tally = _Tally()
    started = time.perf_counter()
    for at, kind, _, payload in timeline:
        if kind in (_LABEL, _LATE_LABEL):
            # the label is known at `at`: it reaches the state and the stream then
            state.round_trip(
                *state.add_event_commands(payload, only_existing=True),
                stream.xadd_command(payload, kind="label", arrival=_py(at)),
            )
            tally.labels += 1
            continue
        if kind == _EVENT:
            state.round_trip(
                *state.add_event_commands(payload),
                stream.xadd_command(payload, arrival=_py(at)),
            )
            tally.events += 1
            continue
        if rate is not None:
            wait = started + tally.sent / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        body = _body(payload, mode)
        target = urls[tally.sent % len(urls)]
        before = time.perf_counter()
        try:
            response = session.post(f"{target}{realtime_task().route}", data=body, timeout=timeout)
        except requests.ConnectionError as exc:
            raise _unreachable(target, exc) from None
        tally.latencies.append((time.perf_counter() - before) * 1000)
        tally.sent += 1
        tally.statuses[response.status_code] += 1
        if response.status_code == 200:
            tally.served_modes[response.json().get("mode")] += 1
            tally.ok_per_url[target] += 1
        else:
            response.content  # noqa: B018 - drain the body, keep the connection
    tally.seconds = time.perf_counter() - started
    return tally


def _summary(day: date, mode, urls: list[str], feed, boot_summary, tally: _Tally) -> dict:
    ordered = sorted(tally.latencies)
    served_modes, sent, seconds = tally.served_modes, tally.sent, tally.seconds
    return {
        "day": day.isoformat(),
        "mode": mode if mode is not None else (next(iter(served_modes)) if served_modes else None),
        "url": urls[0] if len(urls) == 1 else urls,
        "ok_per_url": {u: tally.ok_per_url[u] for u in urls},
        "sent": sent,
        "ok": tally.statuses.get(200, 0),
        "errors": {str(k): v for k, v in sorted(tally.statuses.items()) if k != 200},
        "modes": dict(served_modes),
        "late": int((feed["arrival_timestamp"] > feed["event_timestamp"]).sum()),
        "labels_applied": tally.labels,
        "arrived_events": tally.events,
        "bootstrap": boot_summary,
        "p50_ms": _percentile(ordered, 0.50),
        "p99_ms": _percentile(ordered, 0.99),
        "seconds": round(seconds, 3),
        "rate_per_s": round(sent / seconds, 1) if seconds > 0 else None,
    }


def replay(
    day: date | None = None,
    *,
    mode: str | None = None,
    rate: float | None = None,
    url: str | Sequence[str] = DEFAULT_URL,
    cfg=None,
    token: str | None = None,
    bootstrap: bool = True,
    redis_url: str | None = None,
    timeout: float = 10.0,
    stream_timeout: float = 120.0,
) -> dict:
    """Sends the day's transactions to the sidecar in arrival order (see the module docstring).
    ``url``: one sidecar, or several (requests in turn). Returns a JSON-able summary: sent, ok,
    errors (by status), latency percentiles, seconds."""
    import requests

    from skewless import settings, warehouse

    cfg = cfg or settings.load()
    urls = _check_args(mode, rate, url)
    token = token if token is not None else os.environ.get("SKEWLESS_API_TOKEN") or None
    day = day or warehouse.last_event_day(cfg.warehouse_path)

    state = history = boot_summary = None
    session = requests.Session()
    session.headers["Content-Type"] = "application/json"
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    try:
        served_mode = _check_sidecars(session, urls, mode, timeout)
        feed, arrivals = day_frames(cfg, day)
        if feed.empty:
            raise ReplayError(f"no transactions on {day.isoformat()} in the warehouse")
        if bootstrap:
            state = _connect_state(cfg, redis_url)
            boot_summary, history = _bootstrap(state, cfg, day, served_mode, stream_timeout)
        timeline = build_timeline(feed, arrivals if bootstrap else arrivals.iloc[0:0], history, day)
        if not bootstrap:
            timeline = [item for item in timeline if item[1] == _REQUEST]
        tally = _run(session, timeline, state, urls, mode, rate, timeout)
    finally:
        session.close()
        if state is not None:
            state.round_trip.close()
            state.redis.close()
    return _summary(day, mode, urls, feed, boot_summary, tally)
