"""Writes the dbt feature models from the feature declaration (skewless/features.py).

The generated files are committed so that dbt users can read them; `skewless dbtgen --check` (and a
test) fails when they differ from the declaration. Window semantics are those of features.py:
[floor(t - w, h), t) by event time (h the window's hop), and label-based aggregates count only
labels known at t.

How the SQL gets there, in one pass over each entity's rows:
- a stream of the entity's events plus "query points" that carry no values (the snapshot at the
  cutoff; for the daily grain, every midnight);
- counts, sums and means: since w is a whole number of hops, [floor(t - w, h), t) is the whole
  tiles of [floor(t, h) - w, floor(t, h)) plus t's own tile before t; the stream is summed per
  entity and tile, a range frame over the tiles gives the first part; the second is a running
  total over the entity's stream up to t (ties with t left out) less a running
  total over the tiles before t's, so every hop shares one sort of the stream;
- distinct counts cannot just add up tiles (a value seen in two tiles counts once): the tiles
  count each distinct (value, time), and steps take one out from the moment its value is seen
  again until it leaves the window; the running sum of those steps is read at t. This stays
  O(n log n) for any merchant, and values not seen again within a window make no step;
- label-based rates add up tiles of labelled events (over label time: of label rows, one per
  label at its label_timestamp), and steps correct them for the labels not known in time (a label
  known after its event entered a shifted window, one not after its event). Labels that arrive
  with the usual delay need no step, so the steps stay few.

The models run on DuckDB and PostgreSQL unchanged: what differs between engines goes through the
adapter-dispatched macros of dbt_project/macros/cross_engine.sql (interval_of, seconds_between,
floor_to, type_double, day_series, running_sums_at: an ASOF join on DuckDB, one running sum over
steps and points elsewhere). engine_macros() renders those macros outside dbt for tests.

The daily grain is rendered here, the transaction grain in skewless/dbtgen_windows.py; the SQL
fragments both use are in skewless/dbtgen_sql.py.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from skewless import dbtgen_arrival, dbtgen_sets
from skewless import features as F
from skewless.dbtgen_sql import DOUBLE, HEADER, exact, finish, since, to_double
from skewless.dbtgen_windows import render_transaction

FEATURES_DIR = Path("models") / "marts" / "features"
EXPORTS_DIR = Path("models") / "exports"
# The engine-specific SQL the generated models call (adapter.dispatch); see engine_macros().
MACROS_FILE = Path("macros") / "cross_engine.sql"


def render_group(group: F.FeatureGroup) -> str:
    """The dbt model of a feature group."""
    if group.grain is F.Grain.DAILY:
        return _render_daily(group)
    return render_transaction(group)


_DAILY_AGGS = (F.Agg.COUNT, F.Agg.SUM, F.Agg.AVG, F.Agg.SECONDS_SINCE_LAST)


def _render_daily(group: F.FeatureGroup) -> str:
    """Daily grain: events summed per entity and day first, then whole-day windows over a dense
    grid of midnights. The row at midnight d holds the events of the day before it, so a window of
    k days at d is the k rows ending at d: exactly [d - k days, d)."""
    _check_daily(group)
    key = group.entity.join_key
    # the columns summed per day (SUM, AVG); the other aggregates read the day's count and time
    columns = sorted({a.column for a in group.aggregates if a.agg in (F.Agg.SUM, F.Agg.AVG)})
    return finish(group, _daily_body(key, columns, _daily_exprs(group), _daily_frames(group)))


def _check_daily(group: F.FeatureGroup) -> None:
    """Refuses aggregates and windows the daily grain cannot compute."""
    unsupported = sorted(a.name for a in group.aggregates if a.agg not in _DAILY_AGGS)
    if unsupported:
        raise ValueError(
            f"{group.name}: the daily grain supports {', '.join(_DAILY_AGGS)}; "
            f"{', '.join(unsupported)} need the transaction grain"
        )
    for window in group.windows:
        if F.window_length(window) % timedelta(days=1):
            raise ValueError(f"{group.name}: daily windows must be whole days, not {window}")


def _daily_exprs(group: F.FeatureGroup) -> str:
    """The select expressions of the features over the dense day rows."""
    exprs = []
    for aggregate, window, name in group.window_features():
        frame = f"w_{window}" if window else "w_all"
        col = aggregate.column
        expr = {
            F.Agg.COUNT: f"cast(sum(n) over {frame} as bigint)",  # sum() of bigint is wider
            # day sums are exact decimals (dbtgen_sql.EXACT): the same bits on every build
            F.Agg.SUM: to_double(f"sum(sum_{col}) over {frame}"),
            F.Agg.AVG: (
                f"{to_double(f'sum(sum_{col}) over {frame}')}"
                f" / nullif(cast(sum(n) over {frame} as {DOUBLE}), 0)"
            ),
            F.Agg.SECONDS_SINCE_LAST: since(f"max(last_event_at) over {frame}", "event_timestamp"),
        }[aggregate.agg]
        exprs.append(f"{expr} as {name}")
    return ",\n        ".join(exprs)


def _daily_frames(group: F.FeatureGroup) -> str:
    """One frame of k rows per window of k days, and the whole history."""
    frames = []
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
    return ",\n".join(frames)


def _daily_body(key: str, columns: list[str], expr_sql: str, frames_sql: str) -> str:
    """The CTEs from the events to ``features``: day sums on a dense grid of midnights."""
    day_sums = "".join(f",\n        sum({c}) as sum_{c}" for c in columns)
    dense_sums = "".join(f",\n        coalesce(day.sum_{c}, 0) as sum_{c}" for c in columns)
    one_day = "{{ interval_of(1, 'day') }}"
    series = '{{ day_series("min(event_timestamp)", "max(cutoff.last_midnight)") }}'
    return f"""with events as (
    select {key} as entity_id, event_timestamp, transaction_id{"".join(f", {exact(c)} as {c}" for c in columns)}
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
    """The Parquet file Feast reads (the parquet_file materialization): timestamps as UTC.

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
    for group in dbtgen_arrival.groups():
        name = dbtgen_arrival.model_name(group.name)
        files[FEATURES_DIR / f"{name}.sql"] = dbtgen_arrival.render_as_arrived(group)
        files[FEATURES_DIR / f"_{name}.yml"] = dbtgen_arrival.render_as_arrived_schema(group)
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
