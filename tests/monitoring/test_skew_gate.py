"""Skew thresholds (monitoring/skew_thresholds.yaml, overrides in the declaration) and the
anomalies they find in a report's per-feature measures."""

from __future__ import annotations

import pytest

from monitoring import skew_gate
from skewless.vocabulary import Agg, Aggregate, Ratio

LIMITS = {
    "defaults": {
        "match_rate": {"min": 0.99, "gate": True},
        "js_divergence": {"max": 0.1, "gate": True},
        "psi": {"max": 0.2, "gate": False},
    },
    "overrides": {"stale_ok": {"match_rate": 0.5}},
}


def test_the_committed_defaults_load():
    assert skew_gate.defaults() == LIMITS["defaults"]


def test_measures_past_their_limits_are_anomalies_and_overrides_replace_defaults():
    features = {
        "fine": {"match_rate": 0.995, "js_divergence": 0.01, "psi": 0.05},
        "edge": {"match_rate": 0.99, "js_divergence": 0.1, "psi": 0.2},  # at the limits: fine
        "stale": {"match_rate": 0.6, "js_divergence": 0.02, "psi": 0.3},
        "stale_ok": {"match_rate": 0.6, "js_divergence": None, "psi": 0.0},
        "shifted": {"match_rate": 0.999, "js_divergence": 0.4, "psi": 1.5},
    }
    found = skew_gate.anomalies(features, "materialized", LIMITS)
    assert [(a["feature"], a["metric"], a["gate"]) for a in found] == [
        ("stale", "match_rate", True),
        ("stale", "psi", False),
        ("shifted", "js_divergence", True),
        ("shifted", "psi", False),
    ]
    assert found[0] == {
        "feature": "stale",
        "metric": "match_rate",
        "value": 0.6,
        "threshold": 0.99,
        "bound": "min",
        "mode": "materialized",
        "gate": True,
    }
    text = skew_gate.table(found)
    assert text.splitlines()[0].split() == ["mode", "feature", "metric", "value", "limit", "gates"]
    assert "stale" in text and ">= 0.99" in text and "<= 0.1" in text


def test_declared_thresholds_are_checked():
    Aggregate("ok", Agg.COUNT, skew_thresholds={"match_rate": 0.9})
    with pytest.raises(ValueError, match="bogus"):
        Aggregate("x", Agg.COUNT, skew_thresholds={"bogus": 1})
    with pytest.raises(ValueError, match="expected >= 0"):
        Ratio("r", "a", "b", skew_thresholds={"psi": -1})


def test_a_broken_defaults_file_names_the_problem(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("match_rate: {min: 0.9, max: 1.0}\n")
    with pytest.raises(ValueError, match="one of min/max"):
        skew_gate.defaults(bad)
    bad.write_text("psi:\n")
    with pytest.raises(ValueError, match="psi: expected one of min/max"):
        skew_gate.defaults(bad)
    bad.write_text("l_inf: {max: 0.1}\n")
    with pytest.raises(ValueError, match="unknown measures"):
        skew_gate.defaults(bad)
