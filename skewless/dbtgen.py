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
    """CTEs, ASOF joins and select expressions for the label-based aggregates."""
    ctes, joins, selects = [], [], []
    for aggregate, window, name in group.window_features():
        if aggregate.agg is not F.Agg.LABELED_RATE:
            continue
        seconds, col = _seconds(window), aggregate.column
        ctes.append(
            f"""label_steps_{window} as (
    -- a label counts at t when label_timestamp <= t and t - {window} <= event_timestamp < t:
    -- +1 from max(label, event) (inclusive when the label came later), -1 after event + {window}
    select entity_id, ts, inclusive, sum(n) as n, sum(y) as y
    from (
        select entity_id, greatest(label_timestamp, event_timestamp) as ts,
            label_timestamp > event_timestamp as inclusive, 1 as n, {col}::double as y
        from labels where label_timestamp <= event_timestamp + to_seconds({seconds})
        union all
        select entity_id, event_timestamp + to_seconds({seconds}), false, -1, -({col}::double)
        from labels where label_timestamp <= event_timestamp + to_seconds({seconds})
    ) as steps
    group by entity_id, ts, inclusive
),

label_running_{window} as (
    select entity_id, ts, inclusive,
        sum(n) over running as n,
        sum(y) over running as y
    from label_steps_{window}
    window running as (partition by entity_id, inclusive order by ts rows unbounded preceding)
)"""
        )
        for side, op in (("in", ">="), ("ex", ">")):
            flag = "" if side == "in" else "not "
            joins.append(
                f"asof left join (select * from label_running_{window} where {flag}inclusive)"
                f" as {side}_{window}\n"
                f"    on w.entity_id = {side}_{window}.entity_id"
                f" and w.event_timestamp {op} {side}_{window}.ts"
            )
        n = f"(coalesce(in_{window}.n, 0) + coalesce(ex_{window}.n, 0))"
        y = f"(coalesce(in_{window}.y, 0) + coalesce(ex_{window}.y, 0))"
        selects.append(f"{y} / nullif({n}, 0) as {name}")
    return ctes, joins, selects


def render_group(group: F.FeatureGroup) -> str:
    key = group.entity.join_key
    computed = group.window_features()
    framed = [(a, w, n) for a, w, n in computed if a.agg is not F.Agg.LABELED_RATE]
    labeled = [(a, w, n) for a, w, n in computed if a.agg is F.Agg.LABELED_RATE]
    columns = sorted({a.column for a, _, _ in computed if a.column})
    label_ctes, label_joins, label_selects = _labeled_ctes(group)

    if group.grain is F.Grain.TRANSACTION:
        points = """query_points as (
    -- one snapshot row per entity at the cutoff: the state a batch materialization serves
    select distinct events.entity_id, cutoff.snapshot_at as event_timestamp
    from events cross join cutoff
    where events.event_timestamp < cutoff.snapshot_at
)"""
        ids = ["w.transaction_id", "w.transaction_id is null as is_snapshot"]
        row_filter = ""
    else:
        points = """query_points as (
    -- every midnight from the day after the entity's first event to the cutoff
    select entity_id, unnest(generate_series(
        date_trunc('day', min(event_timestamp)) + interval 1 day,
        date_trunc('day', any_value(cutoff.snapshot_at)),
        interval 1 day
    )) as event_timestamp
    from events cross join cutoff
    where events.event_timestamp < cutoff.snapshot_at
    group by entity_id
)"""
        ids = []
        row_filter = "\n    where w.event_id is null"

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
        f"features as (\n    select\n        {select_list}\n    from windowed as w{joins}{row_filter}\n)"
    )
    ratios = "".join(
        f",\n    {r.numerator} / nullif({r.denominator}, 0) * {r.scale} as {r.name}"
        for r in group.ratios
    )
    frames_sql = ",\n".join(frames)
    rest_sql = ",\n\n".join(blocks)
    sql = f"""{HEADER}-- {group.description}
-- Grain: {group.grain.value}; entity: {group.entity.name}; windows: {", ".join(group.windows)}.

with events as (
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

{rest_sql}

select *{ratios}
from features
"""
    return "\n".join(line.rstrip() for line in sql.splitlines()) + "\n"


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
