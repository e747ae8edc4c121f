"""The stream consumer's feature rows (serving/stream_consumer.py): each entity's features computed
from the consumer's state by ``skewless.evaluate`` (the one declaration) and pushed through the
group's Feast push source into its ``<group>_stream`` view.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from skewless.features import FeatureGroup
from skewless.schemas import ENTITY_KEYS
from skewless.stream import push_source_name

MICROSECOND = timedelta(microseconds=1)


def push(store, state, groups: list[FeatureGroup], as_of: dict[tuple[str, str], datetime]) -> int:
    """Computes the features of each (group, entity key) as of its time from ``state`` (an
    ``ExactState``) and pushes them, one push per group. Returns the number of rows pushed."""
    from skewless.evaluate import evaluate

    by_group = {g.name: g for g in groups}
    keys = sorted({(by_group[g].entity.name, key) for g, key in as_of})
    latest = max(as_of.values()) + MICROSECOND
    events = dict(zip(keys, state.events_before(keys, latest), strict=True))
    rows: dict[str, list[dict]] = {}
    for (group_name, key), at in as_of.items():
        group = by_group[group_name]
        values = evaluate(group, events[(group.entity.name, key)], at)
        row = {group.entity.join_key: key, "event_timestamp": at, **values}
        rows.setdefault(group_name, []).append(row)
    return sum(push_rows(store, by_group[name], group_rows) for name, group_rows in rows.items())


def push_all(store, groups: list[FeatureGroup], records: list[dict], as_of: datetime) -> int:
    """Pushes every entity's row of each group as of ``as_of``, from the events ``records``
    (``state_records``). Returns the number of rows pushed."""
    from skewless.evaluate import evaluate

    total = 0
    for group in groups:
        per_key: dict[str, list[dict]] = {}
        for record in records:
            per_key.setdefault(str(record[group.entity.join_key]), []).append(record)
        rows = [
            {group.entity.join_key: key, "event_timestamp": as_of, **evaluate(group, ev, as_of)}
            for key, ev in per_key.items()
        ]
        if rows:
            total += push_rows(store, group, rows)
    return total


def push_rows(store, group: FeatureGroup, rows: list[dict]) -> int:
    """Pushes ``rows`` (naive UTC times) to the group's push source, online only."""
    import pandas as pd
    from feast.data_source import PushMode

    frame = pd.DataFrame(rows)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"]).dt.tz_localize(UTC)
    for feature in group.features:
        frame[feature.name] = frame[feature.name].astype(feature.dtype)
    store.push(push_source_name(group.name), frame, to=PushMode.ONLINE)
    return len(frame)


def state_records(frame) -> list[dict]:
    """The events of a warehouse history frame as records ``evaluate`` reads (a label only when
    it is known)."""
    import pandas as pd

    records = []
    for row in frame.itertuples(index=False):
        label_time = row.label_timestamp
        known = pd.notna(row.is_fraud) and pd.notna(label_time)
        records.append(
            {
                **{key: str(getattr(row, key)) for key in ENTITY_KEYS},
                "amount": float(row.amount),
                "event_timestamp": row.event_timestamp.to_pydatetime(),
                "is_fraud": int(row.is_fraud) if known else None,
                "label_timestamp": label_time.to_pydatetime() if known else None,
            }
        )
    return records
