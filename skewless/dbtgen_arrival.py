"""Arrival-aware feature models: the features as the online path could have seen them.

The feature models (skewless/dbtgen_windows.py) give each transaction the state just before its
event time t: every event of the entity that happened before t, whenever it reached us. Online,
a transaction is scored when it arrives, from the events that had arrived before it: an event
that happened before t but arrived after the transaction (a late event) is not there yet. Exact
mode serves exactly that; the offline truth differs from it by the late events only.

``<group>_as_arrived`` (one per transaction-grain group) is that view, generated from the same
declaration: a transaction is *overtaken* when an event of its entity that happened before it
arrived after it (the latest arrival among its earlier events is later than its own). An overtaken
transaction's features are computed again from the events that had arrived by then (event time
before t, arrival not after the transaction's own); every other row is the feature model's own.
Late events are few, so the recomputation (a plain aggregate per overtaken transaction, written
from each aggregate's definition as skewless/evaluate.py evaluates it) stays small.

``<training set>_as_arrived`` (per realtime task) is the training set over those models: training
on what serving will see ("arrival" source of ``skewless train``).
"""

from __future__ import annotations

from skewless import features as F
from skewless import schemas
from skewless.dbtgen_sets import ARRIVAL_SUFFIX as SUFFIX
from skewless.dbtgen_sets import STAGED
from skewless.dbtgen_sql import DOUBLE, exact, finish, floor, interval, since, to_double


def model_name(name: str) -> str:
    """The arrival-aware model of a feature model or training set."""
    return f"{name}{SUFFIX}"


def groups() -> list[F.FeatureGroup]:
    """The groups that get an arrival-aware model: those served per transaction."""
    return [g for g in F.GROUPS if g.grain is F.Grain.TRANSACTION]


def _bounds(aggregate: F.Aggregate, window: str) -> tuple[str, str]:
    """[start, end) of the window at t = r.event_timestamp (Aggregate.event_range in SQL): the
    window and its offset are whole hops, so floor(t - d - w, h) = floor(t, h) - d - w."""
    hop = F.window_hop(window)
    tile = floor("r.event_timestamp", hop)
    start = f"{tile} - {interval(aggregate.shift + F.window_length(window))}"
    end = f"{tile} - {interval(aggregate.shift)}" if aggregate.offset else "r.event_timestamp"
    return start, end


def _expression(aggregate: F.Aggregate, window: str | None) -> str:
    """One feature over ``e``, the events of the entity that had arrived before the row ``r``
    and happened before its t (skewless/evaluate.py's definition of each aggregate)."""
    agg, column = aggregate.agg, aggregate.column
    if agg is F.Agg.SECONDS_SINCE_LAST:
        return since("max(e.event_timestamp)", "r.event_timestamp")
    start, end = _bounds(aggregate, window)
    if aggregate.label_time:  # labels known in [start, t] of events labelled within W of them
        within = interval(aggregate.label_within)
        where = (
            f"e.label_timestamp <= e.event_timestamp + {within}"
            f" and e.label_timestamp >= {start} and e.label_timestamp <= r.event_timestamp"
            f" and e.{column} is not null"
        )
    else:
        where = f"e.event_timestamp >= {start} and e.event_timestamp < {end}"
        if agg is F.Agg.LABELED_RATE:
            where += f" and e.{column} is not null and e.label_timestamp <= r.event_timestamp"
    if agg is F.Agg.COUNT:
        return f"count(e.{schemas.EVENT_ID}) filter (where {where})"
    value = f"e.{column}"
    if agg is F.Agg.SUM:  # exact decimals (dbtgen_sql.EXACT): the same bits on every build
        return f"coalesce({to_double(f'sum({exact(value)}) filter (where {where})')}, 0)"
    if agg is F.Agg.AVG:
        total = to_double(f"sum({exact(value)}) filter (where {where})")
        return f"{total} / nullif(count({value}) filter (where {where}), 0)"
    if agg is F.Agg.LABELED_RATE:  # a mean of 0s and 1s: exact in any order
        return f"avg(cast({value} as {DOUBLE})) filter (where {where})"
    if agg is F.Agg.COUNT_DISTINCT:
        return f"count(distinct e.{column}) filter (where {where})"
    raise ValueError(f"{aggregate.name}: no arrival-aware form of {agg}")  # pragma: no cover


def render_as_arrived(group: F.FeatureGroup) -> str:
    """The arrival-aware model of a transaction-grain group."""
    key, event_id = group.entity.join_key, schemas.EVENT_ID
    columns = sorted({a.column for a in group.aggregates if a.column})
    events = ", ".join(
        [
            f"{key} as entity_id",
            event_id,
            "event_timestamp",
            "arrival_timestamp",
            "label_timestamp",
            *columns,
        ]
    )
    features = group.window_features()
    recomputed = ",\n        ".join(f"{_expression(a, w)} as {name}" for a, w, name in features)
    kept = ",\n        ".join(
        f"case when recomputed.{event_id} is null then truth.{name} else recomputed.{name} end"
        f" as {name}"
        for _, _, name in features
    )
    body = f"""with truth as (
    select * from {{{{ ref('{group.name}') }}}}
),

events as (
    select {events}
    from {{{{ ref('{STAGED}') }}}}
),

ordered as (
    -- each transaction with the latest arrival among its entity's earlier events
    select
        *,
        max(arrival_timestamp) over (
            partition by entity_id order by event_timestamp
            range between unbounded preceding and {{{{ before_peers() }}}}
        ) as latest_earlier_arrival
    from events
),

overtaken as (
    -- scored before an earlier event of its entity had arrived
    select entity_id, {event_id}, event_timestamp, arrival_timestamp
    from ordered
    where latest_earlier_arrival > arrival_timestamp
),

recomputed as (
    select
        r.{event_id},
        {recomputed}
    from overtaken as r
    left join events as e
        on e.entity_id = r.entity_id
        and e.event_timestamp < r.event_timestamp
        and e.arrival_timestamp <= r.arrival_timestamp
    group by r.{event_id}, r.event_timestamp
),

features as (
    select
        truth.{key},
        truth.event_timestamp,
        truth.{event_id},
        truth.is_snapshot,
        {kept}
    from truth
    left join recomputed
        on truth.{event_id} = recomputed.{event_id}
)"""
    return finish(
        group, body, "-- Arrival-aware: only the events that had arrived by each scoring."
    )


def render_as_arrived_schema(group: F.FeatureGroup) -> str:
    name = model_name(group.name)
    return f"""# Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
version: 2

models:
  - name: {name}
    description: "{group.name} as the online path could have seen it: each transaction's features from the events that had arrived before it (late events left out until they arrive)."
    columns:
      - name: {schemas.EVENT_ID}
        data_tests: [unique]
      - name: event_timestamp
        data_tests: [not_null]
"""
