"""The feature declaration: well formed, and the committed dbt models follow from it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from skewless import dbtgen, settings
from skewless.features import (
    AMOUNT_RATIOS,
    CUSTOMER_TRANSACTION_WINDOWS,
    FEATURE_SERVICES,
    GROUPS,
    HOPS,
    REQUEST_FEATURES,
    WINDOWS,
    request_features,
    request_features_frame,
)
from tests.featurecheck import same


def test_feature_names_are_unique_and_windows_declared():
    names = [f.name for g in GROUPS for f in g.features]
    assert len(names) == len(set(names))
    assert all(w in WINDOWS for g in GROUPS for w in g.windows)
    assert {s.name for s in FEATURE_SERVICES} >= {"fraud_v1", "churn_v1"}


def test_committed_dbt_models_match_the_declaration():
    assert dbtgen.stale(settings.load().dbt_project_dir) == []


def test_dbtgen_writes_then_reports_nothing_to_do(tmp_path):
    project = tmp_path / "dbt_project"
    assert dbtgen.write(project)  # the first write creates every file
    assert dbtgen.write(project) == []
    assert dbtgen.stale(project) == []


def test_adding_a_window_is_a_one_line_change(monkeypatch):
    from tests.featurecheck import mismatches
    from tests.skewless.test_feature_equivalence import BASE, _raw, _staged, run_model

    monkeypatch.setitem(WINDOWS, "2h", timedelta(hours=2))
    monkeypatch.setitem(HOPS, "2h", timedelta(minutes=10))
    extended = replace(
        CUSTOMER_TRANSACTION_WINDOWS, windows=(*CUSTOMER_TRANSACTION_WINDOWS.windows, "2h")
    )
    assert "customer_tx_count_2h" in extended.feature_names
    assert "customer_merchant_distinct_2h" in dbtgen.render_group(extended)
    events = _staged(
        [
            _raw("c1", "m1", timedelta(minutes=m), is_fraud=0, label_delay=timedelta(0))
            for m in (0, 70, 120, 125)
        ]
    )
    rows = run_model(extended, events, BASE + timedelta(days=1))
    # at 2:05 the window starts at floor(0:05, 10 min) = 0:00: the first event is still in
    counts = sorted((r["event_timestamp"], r["customer_tx_count_2h"]) for r in rows)
    assert [count for _, count in counts[:4]] == [0, 1, 2, 3]
    assert mismatches(extended, rows, events) == []


def test_a_hop_must_fit_its_window_one_day_and_the_other_hops():
    from skewless.vocabulary import check_hops

    day, hour = timedelta(days=1), timedelta(hours=1)
    check_hops({"1d": day, "2h": 2 * hour}, {"1d": hour, "2h": timedelta(minutes=10)})
    for hops, message in (
        ({"1d": timedelta(hours=5), "2h": hour}, "must divide one day"),
        ({"1d": hour, "2h": timedelta(minutes=7)}, "must divide one day"),
        ({"1d": timedelta(hours=3), "2h": 2 * hour}, "do not nest"),
        ({"1d": hour}, "'2h' has no hop"),
        ({"1d": hour, "2h": timedelta(seconds=90)}, "whole minutes"),
    ):
        with pytest.raises(ValueError, match=message):
            check_hops({"1d": day, "2h": 2 * hour}, hops)


def test_request_features():
    saturday_3am = datetime(2025, 3, 1, 3, 15)
    averages = {"customer_amount_avg_7d": 25.0, "customer_amount_avg_30d": 40.0}
    assert request_features(50.0, saturday_3am, averages) == {
        "amount": 50.0,
        "amount_to_avg_7d": 2.0,
        "amount_to_avg_30d": 1.25,
        "hour_of_day": 3,
        "is_weekend": 1,
        "is_night": 1,
    }
    for empty in (None, float("nan"), 0.0):
        values = request_features(50.0, saturday_3am, {**averages, "customer_amount_avg_7d": empty})
        assert values["amount_to_avg_7d"] is None and values["amount_to_avg_30d"] == 1.25
    monday_7am = request_features(50.0, datetime(2025, 3, 3, 7), averages)
    assert (monday_7am["is_weekend"], monday_7am["is_night"]) == (0, 0)
    assert request_features(50.0, datetime(2025, 3, 3, 6, 59, 59), averages)["is_night"] == 1
    assert [f.name for f in REQUEST_FEATURES] == list(request_features(1.0, saturday_3am, averages))


def test_request_features_frame_equals_the_row_function():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame(
        {
            "amount": rng.uniform(0, 500, n).round(2),
            "event_timestamp": pd.Timestamp("2025-01-01")
            + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
        }
    )
    for ratio in AMOUNT_RATIOS:
        frame[ratio.feature] = np.where(
            rng.random(n) < 0.2, np.nan, rng.uniform(0, 100, n).round(2)
        )
        frame.loc[:: rng.integers(20, 60), ratio.feature] = 0.0
    columns = request_features_frame(frame["amount"], frame["event_timestamp"], frame)
    assert list(columns.columns) == [f.name for f in REQUEST_FEATURES]
    for i, row in frame.iterrows():
        values = {
            r.feature: None if np.isnan(row[r.feature]) else row[r.feature] for r in AMOUNT_RATIOS
        }
        expected = request_features(row["amount"], row["event_timestamp"].to_pydatetime(), values)
        got = columns.loc[i].to_dict()
        assert all(same(got[name], value) for name, value in expected.items()), (got, expected)
