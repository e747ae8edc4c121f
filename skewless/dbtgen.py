"""Writes the dbt feature models from the feature declaration (skewless/features.py).

The generated files are committed so that dbt users can read them; `skewless dbtgen --check` (and a
test) fails when they differ from the declaration. Window semantics are those of features.py:
[t - w, t) by event time, and label-based aggregates count only labels known at t.

How the SQL gets there, in one pass over each entity's rows:
- a stream of the entity's events plus "query points" that carry no values (the snapshot at the
  cutoff; for the daily grain, every midnight); window frames `range between w preceding and current
  row exclude group` give exactly [t - w, t) on every row;
- label-based rates cannot use a frame (whether an event counts depends on t through its label
  time), so each label contributes +1 from the moment it is known until its event leaves the window,
  and the running sum of those steps is read at t. This stays O(n log n) for any merchant.

The models run on DuckDB and PostgreSQL unchanged: what differs between engines goes through the
adapter-dispatched macros of dbt_project/macros/cross_engine.sql (interval_of, seconds_between,
type_double, day_series, running_sums_at: an ASOF join on DuckDB, one running sum over steps and
points elsewhere). Engines without count(distinct) over a frame (supports_window_distinct) count
distinct values with steps too. engine_macros() renders those macros outside dbt for tests.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from skewless import dbtgen_sets
from skewless import features as F

HEADER = "-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.\n"
FEATURES_DIR = Path("models") / "marts" / "features"
EXPORTS_DIR = Path("models") / "exports"
# The engine-specific SQL the generated models call (adapter.dispatch); see engine_macros().
MACROS_FILE = Path("macros") / "cross_engine.sql"

ONE_US = "{{ interval_of(1, 'microsecond') }}"
DOUBLE = "{{ type_double() }}"


def _interval(delta: timedelta) -> str:
    return f"{{{{ interval_of({int(delta.total_seconds())}, 'second') }}}}"


def _span(window: str) -> str:
    return _interval(F.window_length(window))


def _frame(name: str, preceding: str) -> str:
    return (
        f"    {name} as (partition by entity_id order by event_timestamp\n"
        f"        range between {preceding} preceding and current row exclude group)"
    )


def _since(start: str, end: str) -> str:
    return f'{{{{ seconds_between("{start}", "{end}") }}}}'


def _window_expr(aggregate: F.Aggregate, window: str | None) -> str:
    w = f"w_{window}" if window else "w_all"
    col = aggregate.column
    return {
        F.Agg.COUNT: f"count(event_id) over {w}",
        F.Agg.SUM: f"coalesce(sum({col}) over {w}, 0)",
        F.Agg.AVG: f"avg({col}) over {w}",
        F.Agg.COUNT_DISTINCT: f"count(distinct {col}) over {w}",
        F.Agg.SECONDS_SINCE_LAST: _since(f"max(event_time) over {w}", "event_timestamp"),
    }[aggregate.agg]


def _union(branches: list[tuple[str, dict[str, str], str]], columns: list[str]) -> str:
    """union all of (ts expression, {column: value}, from/where) branches; other columns 0."""
    selects = []
    for ts, values, source in branches:
        cols = ", ".join(f"{values.get(c, '0')} as {c}" for c in columns)
        selects.append(
            f"        select entity_id, {ts} as ts,\n            {cols}\n        {source}"
        )
    return "\n        union all\n".join(selects)


def _label_steps(labeled) -> tuple[list[tuple[str, dict[str, str], str]], list[str]]:
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
        end = f"event_timestamp + {_interval(start)}"
        if aggregate.label_time_within:
            end = f"least(label_timestamp + {_span(window)}, {end})"
        valid = f"label_timestamp <= event_timestamp + {_interval(start)}"
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
        return f"event_timestamp + {_interval(shift)} + {ONE_US}"
    return f"event_timestamp + {ONE_US}"


def _distinct_steps(distinct) -> tuple[list[str], list[tuple[str, dict[str, str], str]], list[str]]:
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
            end = f"event_timestamp + {_span(window)}"
            branches.append(
                (
                    f"least({end}, coalesce(next_at, {end})) + {ONE_US}",
                    {f"n_{name}": "-1"},
                    f"from {column}_visits",
                )
            )
    selects = [f"cast(coalesce(w.n_{n}, 0) as bigint) as {n}" for _, _, n in distinct]
    return ctes, branches, selects


def render_group(group: F.FeatureGroup) -> str:
    """The dbt model of a feature group."""
    if group.grain is F.Grain.DAILY:
        return _render_daily(group)
    return _render_transaction(group)


_DAILY_AGGS = (F.Agg.COUNT, F.Agg.SUM, F.Agg.AVG, F.Agg.SECONDS_SINCE_LAST)


def _render_daily(group: F.FeatureGroup) -> str:
    """Daily grain: events summed per entity and day first, then whole-day windows over a dense
    grid of midnights. The row at midnight d holds the events of the day before it, so a window of
    k days at d is the k rows ending at d: exactly [d - k days, d)."""
    unsupported = sorted(a.name for a in group.aggregates if a.agg not in _DAILY_AGGS)
    if unsupported:
        raise ValueError(
            f"{group.name}: the daily grain supports {', '.join(_DAILY_AGGS)}; "
            f"{', '.join(unsupported)} need the transaction grain"
        )
    for window in group.windows:
        if F.window_length(window) % timedelta(days=1):
            raise ValueError(f"{group.name}: daily windows must be whole days, not {window}")
    key = group.entity.join_key
    columns = sorted({a.column for a in group.aggregates if a.column})
    day_sums = "".join(f",\n        sum({c}) as sum_{c}" for c in columns)
    dense_sums = "".join(f",\n        coalesce(day.sum_{c}, 0) as sum_{c}" for c in columns)
    exprs, frames = [], []
    for aggregate, window, name in group.window_features():
        frame = f"w_{window}" if window else "w_all"
        col = aggregate.column
        expr = {
            F.Agg.COUNT: f"cast(sum(n) over {frame} as bigint)",  # sum() of bigint is wider
            F.Agg.SUM: f"sum(sum_{col}) over {frame}",
            F.Agg.AVG: (
                f"sum(sum_{col}) over {frame} / nullif(cast(sum(n) over {frame} as {DOUBLE}), 0)"
            ),
            F.Agg.SECONDS_SINCE_LAST: _since(f"max(last_event_at) over {frame}", "event_timestamp"),
        }[aggregate.agg]
        exprs.append(f"{expr} as {name}")
    for window in group.windows:
        days = F.window_length(window) // timedelta(days=1)
        frames.append(
            f"    w_{window} as (partition by entity_id order by event_timestamp\n"
            f"        rows between {days - 1} preceding and current row)"
        )
    frames.append(
        "    w_all as (partition by entity_id order by event_timestamp\n"
        "        rows between unbounded preceding and current row)"
    )
    expr_sql = ",\n        ".join(exprs)
    frames_sql = ",\n".join(frames)
    one_day = "{{ interval_of(1, 'day') }}"
    series = '{{ day_series("min(event_timestamp)", "max(cutoff.last_midnight)") }}'
    body = f"""with events as (
    select {key} as entity_id, event_timestamp, transaction_id{"".join(f", {c}" for c in columns)}
    from {{{{ ref('stg_raw__transactions') }}}}
),

cutoff as (
    select date_trunc('day', {{{{ features_as_of() }}}}) as last_midnight
),

days as (
    -- each day's events, keyed by the midnight after them: the first row that sees them
    select entity_id, date_trunc('day', event_timestamp) + {one_day} as event_timestamp,
        count(transaction_id) as n,
        max(event_timestamp) as last_event_at{day_sums}
    from events cross join cutoff
    where events.event_timestamp < cutoff.last_midnight
    group by entity_id, date_trunc('day', event_timestamp)
),

grid as (
    -- every midnight from the day after the entity's first event to the cutoff
    select entity_id, {series} as event_timestamp
    from days cross join cutoff
    group by entity_id
),

dense as (
    select grid.entity_id, grid.event_timestamp,
        coalesce(day.n, 0) as n,
        day.last_event_at{dense_sums}
    from grid
    left join days as day
        on grid.entity_id = day.entity_id and grid.event_timestamp = day.event_timestamp
),

features as (
    select
        entity_id as {key},
        event_timestamp,
        {expr_sql}
    from dense
    window
{frames_sql}
)"""
    return _finish(group, body)


def _finish(group: F.FeatureGroup, body: str, prelude: str = "") -> str:
    ratios = "".join(
        f",\n    cast({r.numerator} as {DOUBLE}) / nullif({r.denominator}, 0) * {r.scale} as {r.name}"
        for r in group.ratios
    )
    sql = f"""{HEADER}-- {group.description}
-- Grain: {group.grain.value}; entity: {group.entity.name}; windows: {", ".join(group.windows)}.
{prelude}
{body}

select *{ratios}
from features
"""
    return "\n".join(line.rstrip() for line in sql.splitlines()) + "\n"


def _render_transaction(group: F.FeatureGroup) -> str:
    """Transaction grain: one pass over each entity's events plus its snapshot point.

    Framed aggregates come from window frames over the stream; label rates (and, on engines
    without count(distinct) over a frame, distinct counts) from steps read by running_sums_at.
    """
    key = group.entity.join_key
    computed = group.window_features()
    distinct = [(a, w, n) for a, w, n in computed if a.agg is F.Agg.COUNT_DISTINCT]
    labeled = [(a, w, n) for a, w, n in computed if a.agg is F.Agg.LABELED_RATE]
    framed = [(a, w, n) for a, w, n in computed if (a, w, n) not in distinct + labeled]
    columns = sorted({a.column for a, _, _ in computed if a.column})

    points = """query_points as (
    -- one snapshot row per entity at the cutoff: the state a batch materialization serves
    select distinct events.entity_id, cutoff.snapshot_at as event_timestamp
    from events cross join cutoff
    where events.event_timestamp < cutoff.snapshot_at
)"""
    value_cols = "".join(f", {c}" for c in columns)
    null_cols = "".join(f", null as {c}" for c in columns)
    framed_windows = {w for _, w, _ in framed + distinct}
    frames = [_frame(f"w_{w}", _span(w)) for w in group.windows if w in framed_windows]
    if any(a.agg is F.Agg.SECONDS_SINCE_LAST for a, _, _ in framed):
        frames.append(_frame("w_all", "unbounded"))
    frame_exprs = [f"{_window_expr(a, w)} as {n}" for a, w, n in framed]
    distinct_exprs = [f"{_window_expr(a, w)} as {n}" for a, w, n in distinct]

    # Steps: always for label rates; for distinct counts only without window distinct.
    label_branches, label_selects = _label_steps(labeled) if labeled else ([], [])
    distinct_ctes, distinct_branches, distinct_selects = (
        _distinct_steps(distinct) if distinct else ([], [], [])
    )
    label_cols = [f"{p}_{n}" for _, _, n in labeled for p in ("n", "y")]
    distinct_cols = [f"n_{n}" for _, _, n in distinct]

    def steps_blocks(branches, step_cols, extra_ctes):
        union = _union(branches, step_cols)
        sums = ",\n        ".join(f"sum({c}) as {c}" for c in step_cols)
        point_cols = ["entity_id", "event_timestamp", "transaction_id", "event_id"]
        point_cols += [n for _, _, n in framed]
        if not distinct_cols or distinct_cols[0] not in step_cols:
            point_cols += [n for _, _, n in distinct]
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

    step_names = [n for _, _, n in distinct + labeled]

    def features_block(source: str, selects: list[str]) -> str:
        final = [f"w.entity_id as {key}", "w.event_timestamp", "w.transaction_id"]
        final += ["w.transaction_id is null as is_snapshot"]
        # in the order of the declaration, whichever way each feature is computed
        by_name = {n: f"w.{n}" for _, _, n in framed} | dict(zip(step_names, selects, strict=True))
        final += [by_name[n] for _, _, n in computed]
        select_list = ",\n        ".join(final)
        return f"features as (\n    select\n        {select_list}\n    from {source} as w\n)"

    def tail(window_distinct: bool) -> str:
        blocks = []
        if labeled:
            known = " and ".join(sorted({f"{a.column} is not null" for a, _, _ in labeled}))
            label_src = "".join(sorted({f", {a.column}" for a, _, _ in labeled}))
            blocks.append(
                f"labels as (\n    select entity_id, event_timestamp, label_timestamp{label_src}\n"
                f"    from events\n    where {known}\n)"
            )
        branches, cols, ctes = list(label_branches), list(label_cols), []
        if distinct and not window_distinct:
            branches += distinct_branches
            cols += distinct_cols
            ctes = distinct_ctes
        if branches:
            blocks += steps_blocks(branches, cols, ctes)
        distinct_out = [f"w.{n}" for _, _, n in distinct] if window_distinct else distinct_selects
        blocks.append(
            features_block(
                "windowed_steps" if branches else "windowed", distinct_out + label_selects
            )
        )
        return ",\n\n".join(blocks)

    def listed(exprs: list[str]) -> str:
        return "".join(f",\n        {e}" for e in exprs)

    frames_sql = ",\n".join(frames)
    prelude = ""
    windowed_sql, rest_sql = listed(frame_exprs + distinct_exprs), tail(True)
    if distinct:
        # The only engine-dependent structure: count(distinct) over a frame, or steps.
        prelude = "{%- set window_distinct = supports_window_distinct() %}\n"
        windowed_sql = (
            f"{listed(frame_exprs)}\n{{%- if window_distinct %}}{listed(distinct_exprs)}"
            "\n{%- endif %}"
        )
        rest_sql = (
            f"{{%- if window_distinct %}}\n\n{tail(True)}\n{{%- else %}}\n\n{tail(False)}"
            "\n{%- endif %}"
        )
    body = f"""with events as (
    select {key} as entity_id, event_timestamp, transaction_id, label_timestamp{value_cols}
    from {{{{ ref('stg_raw__transactions') }}}}
),

cutoff as (
    select {{{{ features_as_of() }}}} as snapshot_at
),

{points},

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
    return _finish(group, body, prelude)


class _Returned(Exception):  # noqa: N818 - dbt's return() as plain Jinja sees it
    def __init__(self, value):
        self.value = value


def _return(value):
    raise _Returned(value)


def engine_macros(engine: str = "duckdb", project_dir: Path | None = None) -> dict:
    """The dispatched macros of macros/cross_engine.sql as plain Jinja callables for one engine.

    Each name maps to its ``<engine>__`` variant (or ``default__``), so a generated model renders
    outside dbt exactly as dbt renders it on that engine (the property test runs it on DuckDB).
    """
    import jinja2

    from skewless.settings import PROJECT_ROOT

    path = (project_dir or PROJECT_ROOT / "dbt_project") / MACROS_FILE
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    env.globals["return"] = _return
    module = env.from_string(path.read_text()).module
    out = {}
    for name in dir(module):
        if name.startswith("default__"):
            base = name.removeprefix("default__")
            macro = getattr(module, f"{engine}__{base}", None) or getattr(module, name)
            out[base] = _returning(macro)
    return out


def _returning(macro):
    def call(*args):
        try:
            return macro(*args)
        except _Returned as returned:
            return returned.value

    return call


def render_export(group: F.FeatureGroup) -> str:
    """The Parquet file Feast reads (dbt-duckdb external materialization): timestamps as UTC.

    DuckDB only: other engines keep the feature tables, which Feast reads through its own
    offline store for that engine (README, "Going to production")."""
    return (
        f"{HEADER}-- The offline source of the Feast feature view {group.name} (DuckDB only).\n"
        "{{ config(enabled=target.type == 'duckdb') }}\n\n"
        f"select * replace (event_timestamp::timestamptz as event_timestamp)\n"
        f"from {{{{ ref('{group.name}') }}}}\n"
    )


def render_schema(group: F.FeatureGroup) -> str:
    """The model's .yml: description, columns, key tests."""
    key = group.entity.join_key
    lines = [
        "# Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.",
        "version: 2",
        "",
        "models:",
        f"  - name: {group.name}",
        f'    description: "{group.description} Grain: {group.grain.value}."',
        "    columns:",
        f"      - name: {key}",
        f'        description: "{group.entity.description}"',
        "        data_tests: [not_null]",
        "      - name: event_timestamp",
        '        description: "The time t the features are evaluated at (UTC); windows end before t."',
        "        data_tests: [not_null]",
    ]
    if group.grain is F.Grain.TRANSACTION:
        lines += [
            "      - name: transaction_id",
            '        description: "The transaction scored at t; null on the snapshot row at the cutoff."',
            "        data_tests: [unique]",
            "      - name: is_snapshot",
            '        description: "True on the one row per entity at the cutoff (what is materialized)."',
        ]
    for feature in group.features:
        lines += [f"      - name: {feature.name}", f'        description: "{feature.description}"']
        if feature.dtype == "int64":
            lines.append("        data_tests: [not_null]")
    lines += [
        "",
        f"  - name: feast_{group.name}",
        f'    description: "Parquet export of {group.name} read by Feast."',
    ]
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for group in F.GROUPS:
        files[FEATURES_DIR / f"{group.name}.sql"] = render_group(group)
        files[FEATURES_DIR / f"_{group.name}.yml"] = render_schema(group)
        files[EXPORTS_DIR / f"feast_{group.name}.sql"] = render_export(group)
    files.update(dbtgen_sets.expected_files())
    return files


def generated_paths(project_dir: Path) -> list[Path]:
    """Generated files present on disk (a removed group leaves one behind until regenerated)."""
    return [
        p
        for folder in (FEATURES_DIR, EXPORTS_DIR, dbtgen_sets.TRAINING_DIR)
        for p in sorted((project_dir / folder).glob("*"))
        if p.is_file() and p.read_text().startswith(("-- Generated", "# Generated"))
    ]


def write(project_dir: Path) -> list[Path]:
    """Writes the generated models; removes generated files no longer declared. Returns changes."""
    changed = []
    expected = {project_dir / rel: text for rel, text in expected_files().items()}
    for path in generated_paths(project_dir):
        if path not in expected:
            path.unlink()
            changed.append(path)
    for path, text in expected.items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    return changed


def stale(project_dir: Path) -> list[Path]:
    """Generated files that differ from the declaration (empty when in sync)."""
    expected = {project_dir / rel: text for rel, text in expected_files().items()}
    out = [p for p, text in expected.items() if not p.exists() or p.read_text() != text]
    out += [p for p in generated_paths(project_dir) if p not in expected]
    return out


def main(argv: list[str] | None = None) -> int:
    from skewless import settings

    parser = argparse.ArgumentParser(prog="skewless dbtgen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the models are out of date")
    args = parser.parse_args(argv)
    project_dir = settings.load().dbt_project_dir
    if args.check:
        out = stale(project_dir)
        for path in out:
            print(f"out of date: {path.relative_to(project_dir)}", file=sys.stderr)
        if out:
            print("run `skewless dbtgen` to regenerate", file=sys.stderr)
        return 1 if out else 0
    for path in write(project_dir):
        print(f"wrote {path.relative_to(project_dir)}")
    return 0
