"""The transaction grain of the generated feature models (skewless/dbtgen.py explains the SQL).

One pass over each entity's events plus its snapshot point: framed aggregates come from window
frames over the stream; label rates (and, on engines without count(distinct) over a frame, distinct
counts) from steps read by running_sums_at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from skewless import features as F
from skewless.dbtgen_sql import DOUBLE, ONE_US, finish, interval, since, span

# (aggregate, window, feature name), as FeatureGroup.window_features() lists them.
Feature = tuple[F.Aggregate, str | None, str]
Branch = tuple[str, dict[str, str], str]  # (ts expression, {column: value}, from/where)

_QUERY_POINTS = """query_points as (
    -- one snapshot row per entity at the cutoff: the state a batch materialization serves
    select distinct events.entity_id, cutoff.snapshot_at as event_timestamp
    from events cross join cutoff
    where events.event_timestamp < cutoff.snapshot_at
)"""


def _frame(name: str, preceding: str) -> str:
    return (
        f"    {name} as (partition by entity_id order by event_timestamp\n"
        f"        range between {preceding} preceding and current row exclude group)"
    )


def _window_expr(aggregate: F.Aggregate, window: str | None) -> str:
    w = f"w_{window}" if window else "w_all"
    col = aggregate.column
    return {
        F.Agg.COUNT: f"count(event_id) over {w}",
        F.Agg.SUM: f"coalesce(sum({col}) over {w}, 0)",
        F.Agg.AVG: f"avg({col}) over {w}",
        F.Agg.COUNT_DISTINCT: f"count(distinct {col}) over {w}",
        F.Agg.SECONDS_SINCE_LAST: since(f"max(event_time) over {w}", "event_timestamp"),
    }[aggregate.agg]


def _union(branches: list[Branch], columns: list[str]) -> str:
    """union all of (ts expression, {column: value}, from/where) branches; other columns 0."""
    selects = []
    for ts, values, source in branches:
        cols = ", ".join(f"{values.get(c, '0')} as {c}" for c in columns)
        selects.append(
            f"        select entity_id, {ts} as ts,\n            {cols}\n        {source}"
        )
    return "\n        union all\n".join(selects)


def _label_steps(labeled) -> tuple[list[Branch], list[str]]:
    """Steps of the label-based rates, and their select expressions.

    Each label counts at t over one closed interval of t, +1 at its start and -1 one microsecond
    after its end (timestamps are microseconds, so "+ 1 us" turns "after" into "at or after"):
    - a window over event time, ending d before t (d the aggregate's offset, often 0): the label
      counts when label_timestamp <= t and t - d - w <= event_timestamp < t - d, so from
      max(label_timestamp, event_timestamp + d + 1 us) to event_timestamp + d + w; labels known
      only after their event left the window never count;
    - a window over label time, of the events of the last ``within`` (H): the label counts when
      t - w <= label_timestamp <= t and t - H <= event_timestamp < t, so from
      max(label_timestamp, event_timestamp + 1 us) to min(label_timestamp + w, event_timestamp + H).
    Steps starting at the same time share one +1 branch; each window has its own -1 branch.
    """
    starts: dict[str, dict[str, str]] = {}
    branches, selects = [], []
    for aggregate, window, name in labeled:
        start, shift = aggregate.bounds(window)  # shift is 0 for a window over label time
        begin = f"greatest(label_timestamp, {_after(shift)})"
        end = f"event_timestamp + {interval(start)}"
        if aggregate.label_time_within:
            end = f"least(label_timestamp + {span(window)}, {end})"
        valid = f"label_timestamp <= event_timestamp + {interval(start)}"
        col = f"cast({aggregate.column} as {DOUBLE})"
        starts.setdefault(begin, {})[f"n_{name}"] = f"cast({valid} as integer)"
        starts[begin][f"y_{name}"] = f"case when {valid} then {col} else 0 end"
        branches.append(
            (
                f"{end} + {ONE_US}",
                {f"n_{name}": "-1", f"y_{name}": f"-{col}"},
                f"from labels where {valid}",
            )
        )
        selects.append(f"w.y_{name} / nullif(w.n_{name}, 0) as {name}")
    firsts = [(begin, values, "from labels") for begin, values in starts.items()]
    return [*firsts, *branches], selects


def _after(shift: timedelta) -> str:
    """The first microsecond at which an event is in a window ending ``shift`` before t."""
    if shift:
        return f"event_timestamp + {interval(shift)} + {ONE_US}"
    return f"event_timestamp + {ONE_US}"


def _distinct_steps(distinct) -> tuple[list[str], list[Branch], list[str]]:
    """For engines without count(distinct) over a frame: CTEs, steps and select expressions.

    A value is counted at t when one of its events lies in [t - w, t). Each distinct (entity, value,
    time) owns the times after it up to the earlier of its window end and the value's next time:
    +1 at time + 1 us, -1 at least(time + w, next time) + 1 us.
    """
    ctes, branches, selects = [], [], []
    for column in sorted({a.column for a, _, _ in distinct}):
        ctes.append(
            f"""{column}_visits as (
    -- each distinct ({column}, time) of the entity and the next time of the same {column}
    select entity_id, event_timestamp,
        lead(event_timestamp) over (
            partition by entity_id, {column} order by event_timestamp
        ) as next_at
    from (
        select distinct entity_id, {column}, event_timestamp from events where {column} is not null
    ) as visits
)"""
        )
        features = [(w, n) for a, w, n in distinct if a.column == column]
        branches.append(
            (
                f"event_timestamp + {ONE_US}",
                {f"n_{n}": "1" for _, n in features},
                f"from {column}_visits",
            )
        )
        for window, name in features:
            end = f"event_timestamp + {span(window)}"
            branches.append(
                (
                    f"least({end}, coalesce(next_at, {end})) + {ONE_US}",
                    {f"n_{name}": "-1"},
                    f"from {column}_visits",
                )
            )
    selects = [f"cast(coalesce(w.n_{n}, 0) as bigint) as {n}" for _, _, n in distinct]
    return ctes, branches, selects


@dataclass(frozen=True)
class _Plan:
    """A transaction-grain group's features, by how the SQL computes each one."""

    key: str  # the entity's join key
    computed: list[Feature]  # every feature, in the order of the declaration
    framed: list[Feature]  # window frames over the stream
    distinct: list[Feature]  # count(distinct) over a frame, or steps (engine-dependent)
    labeled: list[Feature]  # label-based rates: always steps

    @classmethod
    def of(cls, group: F.FeatureGroup) -> _Plan:
        computed = group.window_features()
        distinct = [(a, w, n) for a, w, n in computed if a.agg is F.Agg.COUNT_DISTINCT]
        labeled = [(a, w, n) for a, w, n in computed if a.agg is F.Agg.LABELED_RATE]
        framed = [(a, w, n) for a, w, n in computed if (a, w, n) not in distinct + labeled]
        return cls(group.entity.join_key, computed, framed, distinct, labeled)


def render_transaction(group: F.FeatureGroup) -> str:
    """Transaction grain: one pass over each entity's events plus its snapshot point.

    Framed aggregates come from window frames over the stream; label rates (and, on engines
    without count(distinct) over a frame, distinct counts) from steps read by running_sums_at.
    """
    plan = _Plan.of(group)
    frame_exprs = [f"{_window_expr(a, w)} as {n}" for a, w, n in plan.framed]
    distinct_exprs = [f"{_window_expr(a, w)} as {n}" for a, w, n in plan.distinct]
    prelude = ""
    windowed_sql, rest_sql = _listed(frame_exprs + distinct_exprs), _tail(plan, True)
    if plan.distinct:
        # The only engine-dependent structure: count(distinct) over a frame, or steps.
        prelude = "{%- set window_distinct = supports_window_distinct() %}\n"
        windowed_sql = (
            f"{_listed(frame_exprs)}\n{{%- if window_distinct %}}{_listed(distinct_exprs)}"
            "\n{%- endif %}"
        )
        rest_sql = (
            f"{{%- if window_distinct %}}\n\n{_tail(plan, True)}\n{{%- else %}}\n\n"
            f"{_tail(plan, False)}\n{{%- endif %}}"
        )
    body = _body(plan, windowed_sql, _frames(group, plan), rest_sql)
    return finish(group, body, prelude)


def _listed(exprs: list[str]) -> str:
    return "".join(f",\n        {e}" for e in exprs)


def _frames(group: F.FeatureGroup, plan: _Plan) -> str:
    """The window frames of the framed (and window-distinct) features."""
    framed_windows = {w for _, w, _ in plan.framed + plan.distinct}
    frames = [_frame(f"w_{w}", span(w)) for w in group.windows if w in framed_windows]
    if any(a.agg is F.Agg.SECONDS_SINCE_LAST for a, _, _ in plan.framed):
        frames.append(_frame("w_all", "unbounded"))
    return ",\n".join(frames)


def _body(plan: _Plan, windowed_sql: str, frames_sql: str, rest_sql: str) -> str:
    """The CTEs from the events to ``windowed``, then ``rest_sql`` (steps and features)."""
    columns = sorted({a.column for a, _, _ in plan.computed if a.column})
    value_cols = "".join(f", {c}" for c in columns)
    null_cols = "".join(f", null as {c}" for c in columns)
    return f"""with events as (
    select {plan.key} as entity_id, event_timestamp, transaction_id, label_timestamp{value_cols}
    from {{{{ ref('stg_raw__transactions') }}}}
),

cutoff as (
    select {{{{ features_as_of() }}}} as snapshot_at
),

{_QUERY_POINTS},

stream as (
    select entity_id, event_timestamp, transaction_id, transaction_id as event_id,
        event_timestamp as event_time{value_cols}
    from events
    union all
    select entity_id, event_timestamp, null, null, null{null_cols}
    from query_points
),

windowed as (
    select
        entity_id, event_timestamp, transaction_id, event_id{windowed_sql}
    from stream
    window
{frames_sql}
),
{rest_sql}"""


def _tail(plan: _Plan, window_distinct: bool) -> str:
    """The CTEs after ``windowed``: labels, steps when any, and ``features``."""
    blocks = []
    if plan.labeled:
        known = " and ".join(sorted({f"{a.column} is not null" for a, _, _ in plan.labeled}))
        label_src = "".join(sorted({f", {a.column}" for a, _, _ in plan.labeled}))
        blocks.append(
            f"labels as (\n    select entity_id, event_timestamp, label_timestamp{label_src}\n"
            f"    from events\n    where {known}\n)"
        )
    # Steps: always for label rates; for distinct counts only without window distinct.
    branches, label_selects = _label_steps(plan.labeled) if plan.labeled else ([], [])
    cols = [f"{p}_{n}" for _, _, n in plan.labeled for p in ("n", "y")]
    ctes: list[str] = []
    distinct_out = [f"w.{n}" for _, _, n in plan.distinct]
    if plan.distinct and not window_distinct:
        ctes, distinct_branches, distinct_out = _distinct_steps(plan.distinct)
        branches = [*branches, *distinct_branches]
        cols = [*cols, *(f"n_{n}" for _, _, n in plan.distinct)]
    if branches:
        blocks += _steps_blocks(plan, branches, cols, ctes)
    source = "windowed_steps" if branches else "windowed"
    blocks.append(_features_block(plan, source, distinct_out + label_selects))
    return ",\n\n".join(blocks)


def _steps_blocks(
    plan: _Plan, branches: list[Branch], step_cols: list[str], extra_ctes: list[str]
) -> list[str]:
    """The step CTEs: their changes per entity and time, and their running sums at each row."""
    union = _union(branches, step_cols)
    sums = ",\n        ".join(f"sum({c}) as {c}" for c in step_cols)
    point_cols = ["entity_id", "event_timestamp", "transaction_id", "event_id"]
    point_cols += [n for _, _, n in plan.framed]
    distinct_cols = [f"n_{n}" for _, _, n in plan.distinct]
    if not distinct_cols or distinct_cols[0] not in step_cols:
        point_cols += [n for _, _, n in plan.distinct]
    return [
        *extra_ctes,
        f"""step_changes as (
    -- +1 when an event starts to count, -1 when it stops (see skewless/dbtgen.py)
    select entity_id, ts,
        {sums}
    from (
{union}
    ) as steps
    group by entity_id, ts
)""",
        f"""windowed_steps as (
    {{{{ running_sums_at('windowed', {point_cols!r}, 'step_changes', {step_cols!r}) }}}}
)""",
    ]


def _features_block(plan: _Plan, source: str, selects: list[str]) -> str:
    final = [f"w.entity_id as {plan.key}", "w.event_timestamp", "w.transaction_id"]
    final += ["w.transaction_id is null as is_snapshot"]
    # in the order of the declaration, whichever way each feature is computed
    step_names = [n for _, _, n in plan.distinct + plan.labeled]
    by_name = {n: f"w.{n}" for _, _, n in plan.framed} | dict(zip(step_names, selects, strict=True))
    final += [by_name[n] for _, _, n in plan.computed]
    select_list = ",\n        ".join(final)
    return f"features as (\n    select\n        {select_list}\n    from {source} as w\n)"
