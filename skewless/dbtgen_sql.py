"""SQL fragments both grains of the generated feature models share (skewless/dbtgen.py).

Engine differences go through the adapter-dispatched macros of dbt_project/macros/cross_engine.sql,
so these fragments are Jinja calls of those macros where an engine could differ.
"""

from __future__ import annotations

from datetime import timedelta

from skewless import features as F

HEADER = "-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.\n"

ONE_US = "{{ interval_of(1, 'microsecond') }}"
DOUBLE = "{{ type_double() }}"
# Sums of a value column (SUM, AVG) are taken exactly in this decimal type and returned as
# doubles. A float sum depends on the order the engine adds in, which a parallel aggregate does
# not fix: two builds of the same rows would differ in the last bits. Ten decimal places hold any
# currency amount exactly, 28 integer digits any sum of them; a larger value fails the build
# with the engine's overflow error.
EXACT = "decimal(38, 10)"


def exact(expr: str) -> str:
    return f"cast({expr} as {EXACT})"


def to_double(expr: str) -> str:
    return f"cast({expr} as {DOUBLE})"


def interval(delta: timedelta) -> str:
    return f"{{{{ interval_of({int(delta.total_seconds())}, 'second') }}}}"


def floor(expr: str, hop: timedelta) -> str:
    """``expr`` (a timestamp) rounded down to a multiple of ``hop`` since the epoch."""
    return f'{{{{ floor_to("{expr}", {int(hop.total_seconds())}) }}}}'


def span(window: str) -> str:
    return interval(F.window_length(window))


def since(start: str, end: str) -> str:
    return f'{{{{ seconds_between("{start}", "{end}") }}}}'


def finish(group: F.FeatureGroup, body: str, prelude: str = "") -> str:
    """The model file: header, the ``features`` CTEs of ``body``, then the group's ratios."""
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
