"""Helpers shared by the tests that hold the dbt SQL and the Python evaluator equal."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from monitoring.skew_measures import matches
from skewless.evaluate import evaluate
from skewless.features import FeatureGroup


def same(a, b) -> bool:
    """Equal as the skew report counts a match (``monitoring.skew_measures.matches``: relative
    tolerance only, so 1e-15 against 0 is a mismatch); None and NaN both mean 'no value'."""
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    return bool(matches(np.array([float(a)]), np.array([float(b)]))[0])


def identical(a, b) -> bool:
    """Equal in value and type (no tolerance); None and NaN each equal only themselves."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


def mismatches(group: FeatureGroup, rows: list[dict], events: list[dict]) -> list[str]:
    """Every feature value in ``rows`` (output of the group's dbt model) that the evaluator,
    run on the same ``events`` (staged transactions), computes differently."""
    key = group.entity.join_key
    by_entity = defaultdict(list)
    for event in events:
        by_entity[event[key]].append(event)
    out = []
    for row in rows:
        expected = evaluate(group, by_entity[row[key]], row["event_timestamp"])
        for name, value in expected.items():
            if not same(row[name], value):
                out.append(
                    f"{key}={row[key]} t={row['event_timestamp']} {name}: sql={row[name]!r} python={value!r}"
                )
    return out
