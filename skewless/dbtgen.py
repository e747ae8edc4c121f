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
  and an ASOF join reads the running sum of those steps at t. This stays O(n log n) for any merchant.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from skewless import features as F

HEADER = "-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.\n"
FEATURES_DIR = Path("models") / "marts" / "features"
EXPORTS_DIR = Path("models") / "exports"


def _seconds(window: str) -> int:
    return int(F.window_length(window).total_seconds())


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
        F.Agg.SECONDS_SINCE_LAST: (
            f"date_diff('microsecond', max(event_time) over {w}, event_timestamp) / 1e6"
        ),
    }[aggregate.agg]


def _labeled_ctes(group: F.FeatureGroup) -> tuple[list[str], list[str], list[str]]:
    """CTEs, the ASOF join and select expressions for the label-based aggregates.

    A label counts at t when label_timestamp <= t and t - w <= event_timestamp < t. So it adds +1 at
    max(label_timestamp, event_timestamp + 1 us) and -1 at event_timestamp + w + 1 us (timestamps are
    microseconds, so "+ 1 us" turns "after" into "at or after"); labels known only after their event
    left the window never count. One running sum of those steps per entity, read by one ASOF join.
    """
    labeled = [(a, w, n) for a, w, n in group.window_features() if a.agg is F.Agg.LABELED_RATE]
    if not labeled:
        return [], [], []
    one_us = "to_microseconds(1)"
    starts, ends, sums, running, selects = [], [], [], [], []
    for aggregate, window, name in labeled:
        span = f"to_seconds({_seconds(window)})"
        valid = f"label_timestamp <= event_timestamp + {span}"
        col = f"{aggregate.column}::double"
        starts += [
            f"({valid})::int as n_{name}",
            f"case when {valid} then {col} else 0 end as y_{name}",
        ]
        zeros = ", ".join(
            f"0 as n_{other}, 0 as y_{other}"
            if other != name
            else f"-1 as n_{name}, -{col} as y_{name}"
            for _, _, other in labeled
        )
        ends.append(
            f"        select entity_id, event_timestamp + {span} + {one_us} as ts, {zeros}\n"
            f"        from labels where {valid}"
        )
        sums += [f"sum(n_{name}) as n_{name}", f"sum(y_{name}) as y_{name}"]
        running += [
            f"sum(n_{name}) over running as n_{name}",
            f"sum(y_{name}) over running as y_{name}",
        ]
        selects.append(f"labels_at_t.y_{name} / nullif(labels_at_t.n_{name}, 0) as {name}")
    start_cols = ",\n            ".join(starts)
    union = "\n        union all\n".join(
        [
            f"        select entity_id, greatest(label_timestamp, event_timestamp + {one_us}) as ts,\n"
            f"            {start_cols}\n        from labels",
            *ends,
        ]
    )
    sum_cols = ",\n        ".join(sums)
    running_cols = ",\n        ".join(running)
    ctes = [
        f"""label_steps as (
    -- +1 when a label becomes usable, -1 when its event leaves the window (see skewless/dbtgen.py)
    select entity_id, ts,
        {sum_cols}
    from (
{union}
    ) as steps
    group by entity_id, ts
)""",
        f"""label_running as (
    select entity_id, ts,
        {running_cols}
    from label_steps
    window running as (partition by entity_id order by ts rows unbounded preceding)
)""",
    ]
    joins = [
        "asof left join label_running as labels_at_t\n"
        "    on w.entity_id = labels_at_t.entity_id and w.event_timestamp >= labels_at_t.ts"
    ]
    return ctes, joins, selects


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
            F.Agg.COUNT: f"(sum(n) over {frame})::bigint",  # sum() of bigint is a hugeint
            F.Agg.SUM: f"sum(sum_{col}) over {frame}",
            F.Agg.AVG: f"sum(sum_{col}) over {frame} / nullif(sum(n) over {frame}, 0)",
            F.Agg.SECONDS_SINCE_LAST: (
                f"date_diff('microsecond', max(last_event_at) over {frame}, event_timestamp) / 1e6"
            ),
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
    body = f"""with events as (
    select {key} as entity_id, event_timestamp, transaction_id{"".join(f", {c}" for c in columns)}
    from {{{{ ref('stg_raw__transactions') }}}}
),

cutoff as (
    select date_trunc('day', {{{{ features_as_of() }}}}) as last_midnight
),

days as (
    -- each day's events, keyed by the midnight after them: the first row that sees them
    select entity_id, date_trunc('day', event_timestamp) + interval 1 day as event_timestamp,
        count(transaction_id) as n,
        max(event_timestamp) as last_event_at{day_sums}
    from events cross join cutoff
    where events.event_timestamp < cutoff.last_midnight
    group by all
),

grid as (
    -- every midnight from the day after the entity's first event to the cutoff
    select entity_id, unnest(generate_series(
        min(event_timestamp), any_value(cutoff.last_midnight), interval 1 day
    )) as event_timestamp
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


def _finish(group: F.FeatureGroup, body: str) -> str:
    ratios = "".join(
        f",\n    {r.numerator} / nullif({r.denominator}, 0) * {r.scale} as {r.name}"
        for r in group.ratios
    )
    sql = f"""{HEADER}-- {group.description}
-- Grain: {group.grain.value}; entity: {group.entity.name}; windows: {", ".join(group.windows)}.

{body}

select *{ratios}
from features
"""
    return "\n".join(line.rstrip() for line in sql.splitlines()) + "\n"


def _render_transaction(group: F.FeatureGroup) -> str:
    """Transaction grain: one pass over each entity's events plus its snapshot point."""
    key = group.entity.join_key
    computed = group.window_features()
    framed = [(a, w, n) for a, w, n in computed if a.agg is not F.Agg.LABELED_RATE]
    labeled = [(a, w, n) for a, w, n in computed if a.agg is F.Agg.LABELED_RATE]
    columns = sorted({a.column for a, _, _ in computed if a.column})
    label_ctes, label_joins, label_selects = _labeled_ctes(group)

    points = """query_points as (
    -- one snapshot row per entity at the cutoff: the state a batch materialization serves
    select distinct events.entity_id, cutoff.snapshot_at as event_timestamp
    from events cross join cutoff
    where events.event_timestamp < cutoff.snapshot_at
)"""
    ids = ["w.transaction_id", "w.transaction_id is null as is_snapshot"]

    value_cols = "".join(f", {c}" for c in columns)
    null_cols = "".join(f", null as {c}" for c in columns)
    frames = [
        _frame(f"w_{w}", f"to_seconds({_seconds(w)})")
        for w in group.windows
        if any(w == w2 for _, w2, _ in framed)
    ]
    if any(a.agg is F.Agg.SECONDS_SINCE_LAST for a, _, _ in framed):
        frames.append(_frame("w_all", "unbounded"))
    frame_exprs = ",\n        ".join(f"{_window_expr(a, w)} as {n}" for a, w, n in framed)

    blocks = []
    if labeled:
        label_cols = "".join(sorted({f", {a.column}" for a, _, _ in labeled}))
        known = " and ".join(sorted({f"{a.column} is not null" for a, _, _ in labeled}))
        blocks.append(
            f"labels as (\n    select entity_id, event_timestamp, label_timestamp{label_cols}\n"
            f"    from events\n    where {known}\n)"
        )
        blocks.extend(label_ctes)
    final = [f"w.entity_id as {key}", "w.event_timestamp", *ids]
    final += [f"w.{n}" for _, _, n in framed] + label_selects
    select_list = ",\n        ".join(final)
    joins = "".join(f"\n    {j}" for j in label_joins)
    blocks.append(
        f"features as (\n    select\n        {select_list}\n    from windowed as w{joins}\n)"
    )
    frames_sql = ",\n".join(frames)
    rest_sql = ",\n\n".join(blocks)
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
        entity_id, event_timestamp, transaction_id, event_id,
        {frame_exprs}
    from stream
    window
{frames_sql}
),

{rest_sql}"""
    return _finish(group, body)


def render_export(group: F.FeatureGroup) -> str:
    """The Parquet file Feast reads (dbt-duckdb external materialization): timestamps as UTC."""
    return (
        f"{HEADER}-- The offline source of the Feast feature view {group.name}.\n\n"
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
    return files


def generated_paths(project_dir: Path) -> list[Path]:
    """Generated files present on disk (a removed group leaves one behind until regenerated)."""
    return [
        p
        for folder in (FEATURES_DIR, EXPORTS_DIR)
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
