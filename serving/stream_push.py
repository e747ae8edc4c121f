"""The stream consumer's feature rows (serving/stream_consumer.py): each entity's features computed
from the consumer's state (``ExactState``: the same tiles as exact mode) and pushed through the
group's Feast push source into its ``<group>_stream`` view.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from skewless.features import FeatureGroup
from skewless.stream import push_source_name

MICROSECOND = timedelta(microseconds=1)


def push(store, state, groups: list[FeatureGroup], as_of: dict[tuple[str, str], datetime]) -> int:
    """Computes the features of each (group, entity key) as of its time from ``state`` (an
    ``ExactState``) and pushes them, one push per group. Returns the number of rows pushed."""
    by_group = {g.name: g for g in groups}
    items = [(by_group[name].entity.name, key, at) for (name, key), at in as_of.items()]
    states = []
    for start in range(0, len(items), 1000):  # one round trip per thousand entities
        states += state.read_each(items[start : start + 1000])
    rows: dict[str, list[dict]] = {}
    for ((group_name, key), at), entity in zip(as_of.items(), states, strict=True):
        group = by_group[group_name]
        values = state.features(group, entity, at)
        row = {group.entity.join_key: key, "event_timestamp": at, **values}
        rows.setdefault(group_name, []).append(row)
    return sum(push_rows(store, by_group[name], group_rows) for name, group_rows in rows.items())


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
