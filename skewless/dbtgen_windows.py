"""The transaction grain of the generated feature models (skewless/dbtgen.py explains the SQL).

One pass over each entity's events plus its snapshot point. A window over w with hop h covers
[floor(t - w, h), t) = [floor(t, h) - w, t) (w is a whole number of hops): the whole hop tiles of
[floor(t, h) - w, floor(t, h)) plus the events of t's own tile before t. So counts, sums and means
come from tiles per hop (one row per entity and tile, a range frame over them) and the head of
t's tile (``_Heads``: a running total over the entity's stream less the tiles before t's);
distinct counts from tiles of distinct (value, time) corrected by steps read by running_sums_at
(``_distinct_steps``); the time since the last event from a frame over the whole stream.

Label-based rates are tiled too, with a correction from steps for the labels not known in time
(``_label_steps``), so their steps stay few when labels arrive on time:
- a window over event time sums the labelled events of its tiles (ending d before t with an
  offset d, so without a head), minus the events of the window whose label is still unknown at t;
- a window over label time sums label rows (one per labelled event, at its label_timestamp, in
  the stream beside the events) by tile and head, the head with the labels known exactly at t;
  a label not after its event counts from just after the event instead, through steps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from skewless import features as F
from skewless.dbtgen_sql import DOUBLE, ONE_US, exact, finish, floor, interval, since, to_double

# (aggregate, window, feature name), as FeatureGroup.window_features() lists them.
Feature = tuple[F.Aggregate, str | None, str]
Branch = tuple[str, dict[str, str], str]  # (ts expression, {column: value}, from/where)

_QUERY_POINTS = """query_points as (
    -- one snapshot row per entity at the cutoff: the state a batch materialization serves
    select distinct events.entity_id, cutoff.snapshot_at as event_timestamp
    from events cross join cutoff
    where events.event_timestamp < cutoff.snapshot_at
)"""

_TILED = (F.Agg.COUNT, F.Agg.SUM, F.Agg.AVG)


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())


def _hop_end(expr: str, window: str, shift: timedelta = timedelta(0)) -> str:
    """The first t at which an event at ``expr`` has left the window (ending ``shift`` before t):
    floor(expr, h) + h + shift + w."""
    hop = F.window_hop(window)
    return f"{floor(expr, hop)} + {interval(hop + shift + F.window_length(window))}"


def _union(branches: list[Branch], columns: list[str]) -> str:
    """union all of (ts expression, {column: value}, from/where) branches; other columns 0."""
    selects = []
    for ts, values, source in branches:
        cols = ", ".join(f"{values.get(c, '0')} as {c}" for c in columns)
        selects.append(
            f"        select entity_id, {ts} as ts,\n            {cols}\n        {source}"
        )
    return "\n        union all\n".join(selects)


def _label_value(aggregate: F.Aggregate) -> str:
    """The stream column of a window over label time: the label, where it counts at all (known at
    most W after its event, after the event)."""
    return f"lt_{aggregate.column}_{_seconds(aggregate.label_within)}"


def _label_steps(labeled) -> tuple[list[Branch], list[str]]:
    """Steps of the label-based rates, and their select expressions.

    The tiles count a label over one interval of t; the steps correct that interval where the
    label is not known in time (timestamps are microseconds, so "+ 1 us" turns "after" into "at or
    after"); h is the window's hop, d the offset (or 0):
    - a window over event time, floor(t - d - w, h) <= event_timestamp < floor(t - d, h)
      (< t without an offset): the tiles count a labelled event from its entry,
      floor(event_timestamp, h) + h + d (event_timestamp + 1 us without an offset), to
      floor(event_timestamp, h) + h + d + w; a label known after its entry is taken out (n_, y_
      of the steps, subtracted) from the entry to the earlier of its label_timestamp and that end,
      so a label known only after its event left the window never counts;
    - a window over label time, floor(t - w, h) <= label_timestamp <= t, of events before t
      labelled at most W (``label_time_within``) after them: label rows of the stream count from
      label_timestamp to floor(label_timestamp, h) + h + w; a label not after its event is no
      label row but a step (added) from event_timestamp + 1 us to that end.
    Steps with the same start and the same condition share one branch.
    """
    starts: dict[tuple[str, str], dict[str, str]] = {}
    branches, selects = [], []
    for aggregate, window, name in labeled:
        col = f"cast({aggregate.column} as {DOUBLE})"
        hop = F.window_hop(window)
        known = f"{aggregate.column} is not null"
        if aggregate.label_time:
            begin = f"event_timestamp + {ONE_US}"
            stop = _hop_end("label_timestamp", window)
            where = (
                f"{known} and label_timestamp <= event_timestamp"
                f" and {begin} < {stop}"
                f" and label_timestamp <= event_timestamp + {interval(aggregate.label_within)}"
            )
            sign = "+"
        else:
            shift = aggregate.shift
            begin = (
                f"{floor('event_timestamp', hop)} + {interval(hop + shift)}"
                if shift
                else f"event_timestamp + {ONE_US}"
            )
            stop = f"least(label_timestamp, {_hop_end('event_timestamp', window, shift)})"
            where = f"{known} and label_timestamp > {begin}"
            sign = "-"
        starts.setdefault((begin, f"from labels where {where}"), {}).update(
            {f"n_{name}": "1", f"y_{name}": col}
        )
        branches.append(
            (stop, {f"n_{name}": "-1", f"y_{name}": f"-{col}"}, f"from labels where {where}")
        )
        n = f"w.tn_{name} {sign} coalesce(w.n_{name}, 0)"
        y = f"w.ty_{name} {sign} coalesce(w.y_{name}, 0)"
        selects.append(f"({y}) / nullif({n}, 0) as {name}")
    firsts = [(begin, values, source) for (begin, source), values in starts.items()]
    return [*firsts, *branches], selects


def _distinct_steps(distinct) -> tuple[list[str], list[Branch], list[str]]:
    """CTEs, steps and select expressions of the distinct counts.

    A value counts at t while one of its events lies in the window: an event at e from e + 1 us to
    floor(e, h) + h + w. Each distinct (entity, value, time), a visit, owns the times after it up
    to the earlier of that end and the value's next time + 1 us (where the next one takes over).
    The tiles count every visit from e + 1 us to its end (``visit_`` rows of the stream); the
    steps (subtracted) take a visit out from its value's next time + 1 us to its end, so only
    values seen again within a window make steps.
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
        taken = f"next_at + {ONE_US}"
        before = {n: f"{taken} < {_hop_end('event_timestamp', w)}" for w, n in features}
        any_before = " or ".join(before.values())
        branches.append(
            (
                taken,
                {f"n_{n}": f"cast({cond} as integer)" for n, cond in before.items()},
                f"from {column}_visits where {any_before}",
            )
        )
        for window, name in features:
            end = _hop_end("event_timestamp", window)
            branches.append(
                (end, {f"n_{name}": "-1"}, f"from {column}_visits where {before[name]}")
            )
    selects = [f"cast(w.tn_{n} - coalesce(w.n_{n}, 0) as bigint) as {n}" for _, _, n in distinct]
    return ctes, branches, selects


@dataclass(frozen=True)
class _Plan:
    """A transaction-grain group's features, by how the SQL computes each one."""

    key: str  # the entity's join key
    computed: list[Feature]  # every feature, in the order of the declaration
    tiled: list[Feature]  # counts, sums, means: hop tiles plus t's own tile
    last: list[Feature]  # seconds since the last event: a frame over the stream
    distinct: list[Feature]  # distinct counts: tiles of distinct (value, time), less steps
    labeled: list[Feature]  # label-based rates: tiles of labels, corrected by steps

    @classmethod
    def of(cls, group: F.FeatureGroup) -> _Plan:
        computed = group.window_features()

        def having(*aggs):
            return [(a, w, n) for a, w, n in computed if a.agg in aggs]

        return cls(
            group.entity.join_key,
            computed,
            having(*_TILED),
            having(F.Agg.SECONDS_SINCE_LAST),
            having(F.Agg.COUNT_DISTINCT),
            having(F.Agg.LABELED_RATE),
        )

    @property
    def hops(self) -> list[timedelta]:
        return sorted({F.window_hop(w) for _, w, _ in self.tiled + self.labeled + self.distinct})

    def tiled_at(self, hop: timedelta) -> list[Feature]:
        return [(a, w, n) for a, w, n in self.tiled if F.window_hop(w) == hop]

    def distinct_at(self, hop: timedelta) -> list[Feature]:
        return [(a, w, n) for a, w, n in self.distinct if F.window_hop(w) == hop]

    @property
    def visit_columns(self) -> list[str]:
        return sorted({a.column for a, _, _ in self.distinct})

    def labeled_at(self, hop: timedelta) -> list[Feature]:
        return [(a, w, n) for a, w, n in self.labeled if F.window_hop(w) == hop]

    @property
    def label_rows(self) -> list[F.Aggregate]:
        """The aggregates over label time, one per stream column of label rows."""
        seen = {}
        for a, _, _ in self.labeled:
            if a.label_time:
                seen.setdefault(_label_value(a), a)
        return list(seen.values())


@dataclass
class _Heads:
    """The events of t's own tile before t (with ``upto``: up to t, peers included), per hop.

    A running total over the entity's whole stream in time order (``w_all``, or ``w_upto``) less
    the totals of the tiles before t's tile (``b_`` columns of ``tile_sums_<h>``: a running sum
    over the tiles). Every hop shares the stream's one sort; a frame per tile would sort the
    stream again for each hop. The totals are exact: counts, exact decimal sums, and label
    values, which are 0 or 1.
    """

    before: dict[int, dict[str, None]] = field(default_factory=lambda: defaultdict(dict))
    frames: set[str] = field(default_factory=set)

    def __call__(self, agg: str, tile_column: str, h: int, *, upto: bool = False) -> str:
        """``agg`` (e.g. ``count(s.event_id)``) over t's tile of hop ``h``, whose tiles hold its
        total as ``tile_column``; a sum is 0 over no rows."""
        frame = "w_upto" if upto else "w_all"
        self.frames.add(frame)
        self.before[h][tile_column] = None
        running = f"{agg} over {frame}"
        if not agg.startswith("count("):
            running = f"coalesce({running}, 0)"
        return f"({running} - coalesce(t_{h}.b_{tile_column}, 0))"


def render_transaction(group: F.FeatureGroup) -> str:
    """Transaction grain: one pass over each entity's events plus its snapshot point (see the
    module docstring)."""
    plan = _Plan.of(group)
    return finish(group, _body(plan, _tail(plan)))


def _tile_frame(frames: dict[str, str], hop: timedelta, window: str, shift: timedelta) -> str:
    """The name of the frame over the tiles of [tile - d - w, tile - d), added to ``frames``."""
    h = _seconds(hop)
    name = f"w_{window}_{_seconds(shift)}" if shift else f"w_{window}"
    last = f"{interval(shift + hop)} preceding" if shift else f"{{{{ before_current_tile({h}) }}}}"
    frames[name] = (
        f"    {name} as (partition by entity_id order by bucket_{h}\n"
        f"        range between {interval(F.window_length(window) + shift)} preceding and {last})"
    )
    return name


def _tile_ctes(plan: _Plan, columns: list[str], heads: _Heads) -> list[str]:
    """Per hop: the stream summed per entity and tile, each window's sums over the tiles of
    [tile - w, tile), and the totals of the tiles before each tile that ``heads`` read."""
    ctes = []
    for hop in plan.hops:
        h = _seconds(hop)
        sums = "".join(f",\n        sum({c}) as s_{c}, count({c}) as c_{c}" for c in columns)
        labeled = plan.labeled_at(hop)
        label_values = sorted(
            {_label_value(a) if a.label_time else a.column for a, _, _ in labeled}
        )
        sums += "".join(
            f",\n        sum(cast({c} as {DOUBLE})) as ls_{c}, count({c}) as lc_{c}"
            for c in label_values
        )
        sums += "".join(
            f",\n        count(visit_{c}) as vc_{c}"
            for c in sorted({a.column for a, _, _ in plan.distinct_at(hop)})
        )
        ctes.append(
            f"""tiles_{h} as (
    select entity_id, bucket_{h}, count(event_id) as n{sums}
    from timeline
    group by entity_id, bucket_{h}
)"""
        )
        windows = sorted({w for _, w, _ in plan.tiled_at(hop)}, key=F.window_length)
        selects, frames = [], {}

        for w in windows:
            f = _tile_frame(frames, hop, w, timedelta(0))
            selects.append(f"sum(n) over {f} as n_{w}")
            selects += [f"sum(s_{c}) over {f} as s_{c}_{w}" for c in columns]
            selects += [f"sum(c_{c}) over {f} as c_{c}_{w}" for c in columns]
        for a, w, name in plan.distinct_at(hop):
            f = _tile_frame(frames, hop, w, timedelta(0))
            selects.append(f"sum(vc_{a.column}) over {f} as dn_{name}")
        for a, w, name in labeled:
            f = _tile_frame(frames, hop, w, a.shift)
            c = _label_value(a) if a.label_time else a.column
            selects += [f"sum(lc_{c}) over {f} as ln_{name}", f"sum(ls_{c}) over {f} as ly_{name}"]
        selects += [f"sum({c}) over w_before as b_{c}" for c in heads.before[h]]
        if heads.before[h]:
            frames["w_before"] = (
                f"    w_before as (partition by entity_id order by bucket_{h}\n"
                "        rows between unbounded preceding and 1 preceding)"
            )
        listed = "".join(f",\n        {s}" for s in selects)
        frames_sql = ",\n".join(frames.values())
        ctes.append(
            f"""tile_sums_{h} as (
    select entity_id, bucket_{h}{listed}
    from tiles_{h}
    window
{frames_sql}
)"""
        )
    return ctes


def _tiled_expr(aggregate: F.Aggregate, window: str, heads: _Heads) -> str:
    """A count, sum or mean: the window's whole tiles plus the events of t's own tile before t."""
    h = _seconds(F.window_hop(window))
    tiles = f"t_{h}"
    col = aggregate.column
    if aggregate.agg is F.Agg.COUNT:
        head = heads("count(s.event_id)", "n", h)
        return f"cast(coalesce({tiles}.n_{window}, 0) + {head} as bigint)"
    # the value column is an exact decimal (dbtgen_sql.EXACT): the same bits on every build
    head = heads(f"sum(s.{col})", f"s_{col}", h)
    total = to_double(f"coalesce({tiles}.s_{col}_{window}, 0) + {head}")
    if aggregate.agg is F.Agg.SUM:
        return total
    count = f"coalesce({tiles}.c_{col}_{window}, 0) + {heads(f'count(s.{col})', f'c_{col}', h)}"
    return f"{total} / nullif({count}, 0)"


def _labeled_exprs(aggregate: F.Aggregate, window: str, name: str, heads: _Heads) -> list[str]:
    """The tiled part of a label-based rate: its labels (tn_) and their sum (ty_), the window's
    tiles plus, without an offset, the labels of t's own tile (over label time: known at t)."""
    h = _seconds(F.window_hop(window))
    n, y = f"coalesce(t_{h}.ln_{name}, 0)", f"coalesce(t_{h}.ly_{name}, 0)"
    if aggregate.shift and not aggregate.label_time:
        return [f"{n} as tn_{name}", f"{y} as ty_{name}"]
    c = _label_value(aggregate) if aggregate.label_time else aggregate.column
    upto = aggregate.label_time  # over label time: the labels known at t count
    return [
        f"{n} + {heads(f'count(s.{c})', f'lc_{c}', h, upto=upto)} as tn_{name}",
        f"{y} + {heads(f'sum(cast(s.{c} as {DOUBLE}))', f'ls_{c}', h, upto=upto)} as ty_{name}",
    ]


def _body(plan: _Plan, rest_sql: str) -> str:
    """The CTEs from the events to ``windowed``, then ``rest_sql`` (steps and features)."""
    columns = sorted({a.column for a, _, _ in plan.computed if a.column})
    tile_columns = sorted({a.column for a, _, _ in plan.tiled if a.column})
    summed = {a.column for a, _, _ in plan.tiled if a.agg in (F.Agg.SUM, F.Agg.AVG)}
    event_cols = "".join(f", {exact(c)} as {c}" if c in summed else f", {c}" for c in columns)
    value_cols = "".join(f", {c}" for c in columns)
    null_cols = "".join(f", null as {c}" for c in columns)
    visit_cols = "".join(f", visit_{c}" for c in plan.visit_columns)
    visit_nulls = "".join(f", cast(null as integer) as visit_{c}" for c in plan.visit_columns)
    # each distinct (entity, value, time) once: the first of its events
    visit_values = "".join(
        f",\n            case when {c} is not null and row_number() over (partition by entity_id,"
        f" {c}, event_timestamp order by transaction_id) = 1 then 1 end as visit_{c}"
        for c in plan.visit_columns
    )
    label_rows = plan.label_rows
    lt_cols = "".join(f", {_label_value(a)}" for a in label_rows)
    lt_nulls = "".join(f", cast(null as {DOUBLE}) as {_label_value(a)}" for a in label_rows)
    if label_rows:
        lt_values = "".join(
            f", cast(case when label_timestamp <= event_timestamp + {interval(a.label_within)}"
            f" then {a.column} end as {DOUBLE}) as {_label_value(a)}"
            for a in label_rows
        )
        known = " or ".join(sorted({f"{a.column} is not null" for a in label_rows}))
        lt_cols += ", is_label"
        lt_nulls += ", false as is_label"
        label_union = f"""
        union all
        -- each label at the time it became known (windows over label time)
        select entity_id, label_timestamp, null, null, null{null_cols}{visit_nulls}{lt_values}, true
        from events
        where ({known}) and label_timestamp > event_timestamp"""
    else:
        label_union = ""
    buckets = "".join(
        f",\n        {floor('event_timestamp', hop)} as bucket_{_seconds(hop)}" for hop in plan.hops
    )
    heads = _Heads()
    exprs = [f"{_tiled_expr(a, w, heads)} as {n}" for a, w, n in plan.tiled]
    exprs += [f"{since('max(s.event_time) over w_all', 's.event_timestamp')} as {n}"
              for _, _, n in plan.last]  # fmt: skip
    exprs += [e for a, w, n in plan.labeled for e in _labeled_exprs(a, w, n, heads)]
    exprs += [
        f"coalesce(t_{h}.dn_{n}, 0) + {heads(f'count(s.visit_{c})', f'vc_{c}', h)} as tn_{n}"
        for a, w, n in plan.distinct
        for h, c in [(_seconds(F.window_hop(w)), a.column)]
    ]
    if label_rows:
        exprs.append("s.is_label")
    frames = []
    if plan.last or "w_all" in heads.frames:
        frames.append(
            "    w_all as (partition by s.entity_id order by s.event_timestamp\n"
            "        range between unbounded preceding and {{ before_peers() }})"
        )
    if "w_upto" in heads.frames:
        frames.append(
            "    w_upto as (partition by s.entity_id order by s.event_timestamp\n"
            "        range between unbounded preceding and current row)"
        )
    joins = "".join(
        f"\n    left join tile_sums_{h} as t_{h}\n"
        f"        on t_{h}.entity_id = s.entity_id and t_{h}.bucket_{h} = s.bucket_{h}"
        for h in map(_seconds, plan.hops)
    )
    window_sql = ("\n    window\n" + ",\n".join(frames)) if frames else ""
    tile_sql = "".join(f"{cte},\n\n" for cte in _tile_ctes(plan, tile_columns, heads))
    return f"""with events as (
    select {plan.key} as entity_id, event_timestamp, transaction_id, label_timestamp{event_cols}
    from {{{{ ref('stg_raw__transactions') }}}}
),

cutoff as (
    select {{{{ features_as_of() }}}} as snapshot_at
),

{_QUERY_POINTS},

timeline as (
    select entity_id, event_timestamp, transaction_id, event_id, event_time{value_cols}{visit_cols}{lt_cols}{buckets}
    from (
        select entity_id, event_timestamp, transaction_id, transaction_id as event_id,
            event_timestamp as event_time{value_cols}{visit_values}{lt_nulls}
        from events
        union all
        select entity_id, event_timestamp, null, null, null{null_cols}{visit_nulls}{lt_nulls}
        from query_points{label_union}
    ) as merged
),

{tile_sql}windowed as (
    select
        s.entity_id, s.event_timestamp, s.transaction_id, s.event_id{_listed(exprs)}
    from timeline as s{joins}{window_sql}
),

{rest_sql}"""


def _listed(exprs: list[str]) -> str:
    return "".join(f",\n        {e}" for e in exprs)


def _tail(plan: _Plan) -> str:
    """The CTEs after ``windowed``: labels, steps when any, and ``features``."""
    blocks = []
    if plan.label_rows:
        blocks.append(
            "points as (\n    -- the rows features are read at: events and snapshots, no label rows\n"
            "    select * from windowed where not is_label\n)"
        )
    if plan.labeled:
        known = " or ".join(sorted({f"{a.column} is not null" for a, _, _ in plan.labeled}))
        label_src = "".join(sorted({f", {a.column}" for a, _, _ in plan.labeled}))
        blocks.append(
            f"labels as (\n    select entity_id, event_timestamp, label_timestamp{label_src}\n"
            f"    from events\n    where {known}\n)"
        )
    branches, label_selects = _label_steps(plan.labeled) if plan.labeled else ([], [])
    cols = [f"{p}_{n}" for _, _, n in plan.labeled for p in ("n", "y")]
    ctes, distinct_selects = [], []
    if plan.distinct:
        ctes, distinct_branches, distinct_selects = _distinct_steps(plan.distinct)
        branches = [*branches, *distinct_branches]
        cols = [*cols, *(f"n_{n}" for _, _, n in plan.distinct)]
    points = "points" if plan.label_rows else "windowed"
    if branches:
        blocks += _steps_blocks(plan, points, branches, cols, ctes)
    source = "windowed_steps" if branches else points
    blocks.append(_features_block(plan, source, distinct_selects + label_selects))
    return ",\n\n".join(blocks)


def _steps_blocks(
    plan: _Plan, points: str, branches: list[Branch], step_cols: list[str], extra_ctes: list[str]
) -> list[str]:
    """The step CTEs: their changes per entity and time, and their running sums at each row."""
    union = _union(branches, step_cols)
    sums = ",\n        ".join(f"sum({c}) as {c}" for c in step_cols)
    point_cols = ["entity_id", "event_timestamp", "transaction_id", "event_id"]
    point_cols += [n for _, _, n in plan.tiled + plan.last]
    point_cols += [f"{p}_{n}" for _, _, n in plan.labeled for p in ("tn", "ty")]
    point_cols += [f"tn_{n}" for _, _, n in plan.distinct]
    return [
        *extra_ctes,
        f"""step_changes as (
    -- what the tiles miscount, per entity and time: +1 from when, -1 until (skewless/dbtgen.py)
    select entity_id, ts,
        {sums}
    from (
{union}
    ) as steps
    group by entity_id, ts
)""",
        f"""windowed_steps as (
    {{{{ running_sums_at('{points}', {point_cols!r}, 'step_changes', {step_cols!r}) }}}}
)""",
    ]


def _features_block(plan: _Plan, source: str, selects: list[str]) -> str:
    final = [f"w.entity_id as {plan.key}", "w.event_timestamp", "w.transaction_id"]
    final += ["w.transaction_id is null as is_snapshot"]
    # in the order of the declaration, whichever way each feature is computed
    step_names = [n for _, _, n in plan.distinct + plan.labeled]
    by_name = {n: f"w.{n}" for _, _, n in plan.tiled + plan.last}
    by_name |= dict(zip(step_names, selects, strict=True))
    final += [by_name[n] for _, _, n in plan.computed]
    select_list = ",\n        ".join(final)
    return f"features as (\n    select\n        {select_list}\n    from {source} as w\n)"
