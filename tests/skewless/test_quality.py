"""Great Expectations gates: raw contract, declaration-derived feature suites, readable reports."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import date, timedelta

import pandas as pd
import pytest

from skewless import features, quality, simulate, warehouse
from skewless.features import (
    CUSTOMER_DAILY_ACTIVITY,
    CUSTOMER_TRANSACTION_WINDOWS,
    MERCHANT_TRANSACTION_WINDOWS,
)

DAY = date(2025, 1, 2)


def _line(text: str, *words: str) -> str:
    """The one report line naming all of ``words``."""
    lines = [line for line in text.splitlines() if all(w in line for w in words)]
    assert len(lines) == 1, f"expected one line naming {words} in:\n{text}"
    return lines[0]


def _expectations(suite) -> set[tuple]:
    out = set()
    for e in suite.expectations:
        kw = e.configuration.kwargs
        out.add((e.expectation_type, kw.get("column") or (kw.get("column_A"), kw.get("column_B"))))
    return out


@pytest.fixture(scope="module")
def raw_day() -> pd.DataFrame:
    frame = simulate.generate(customers=200, days=3, seed=3, start=date(2025, 1, 1))
    day = frame[frame.event_timestamp.dt.date == DAY].reset_index(drop=True)
    assert len(day) > 50
    return day


def test_great_expectations_is_imported_only_when_validating():
    code = "import sys, skewless.quality; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_clean_raw_frame_passes(raw_day):
    report = quality.check(quality.validate_raw(raw_day, day=DAY))
    assert report.success and report.failed == []
    assert report.rows == len(raw_day) and report.day == "2025-01-02"
    assert "OK" in report.to_text()
    # unknown labels and on-time arrivals are nulls, which the contract allows
    loose = raw_day.astype({"is_fraud": "Int8"})
    loose.loc[:9, ["is_fraud", "label_timestamp", "arrival_timestamp"]] = None
    assert quality.validate_raw(loose, day="2025-01-02").success
    # time-zone-aware timestamps are compared in UTC
    aware = raw_day.assign(event_timestamp=raw_day.event_timestamp.dt.tz_localize("UTC"))
    assert quality.validate_raw(aware, day=DAY).success
    # without a day, the whole slice is checked without the day bounds
    assert quality.validate_raw(raw_day).success


def test_bad_raw_frame_fails_naming_every_check(raw_day, tmp_path):
    bad = raw_day.copy()
    bad.loc[0, "amount"] = -12.5
    bad.loc[1, "customer_id"] = None
    bad.loc[2, "transaction_id"] = bad.loc[3, "transaction_id"]
    bad.loc[4, "is_fraud"] = 2
    bad.loc[5, ["event_timestamp", "arrival_timestamp"]] = pd.Timestamp("2025-01-03 00:00:00")
    bad.loc[6, "label_timestamp"] = bad.loc[6, "event_timestamp"] - timedelta(seconds=1)
    report = quality.validate_raw(bad, day=DAY)
    assert not report.success
    text = report.to_text()
    assert text.startswith("raw_transactions (day 2025-01-02): FAILED - 6 of ")
    assert "-12.5" in _line(text, "amount", "expect_column_values_to_be_between", ">= 0")
    assert "1 unexpected" in _line(text, "customer_id", "expect_column_values_to_not_be_null")
    assert "2 unexpected" in _line(text, "transaction_id", "expect_column_values_to_be_unique")
    assert "e.g. 2" in _line(text, "is_fraud", "expect_column_values_to_be_in_set", "{0, 1}")
    line = _line(text, "event_timestamp ", "expect_column_values_to_be_between")
    assert "[2025-01-02T00:00:00, 2025-01-03T00:00:00)" in line and "2025-01-03T00:00:00" in line
    line = _line(text, "label_timestamp >= event_timestamp")
    assert "expect_column_pair_values_a_to_be_greater_than_b" in line
    assert len(report.failed) == 6

    with pytest.raises(quality.DataQualityError) as caught:
        quality.check(report)
    assert caught.value.report is report
    assert str(caught.value) == text

    saved = quality.save(report, tmp_path / "quality")
    assert saved.parent == tmp_path / "quality"
    data = json.loads(saved.read_text())
    assert data["success"] is False and data["suite"] == "raw_transactions"
    amount = next(f for f in data["failed"] if f["column"] == "amount")
    assert amount["unexpected_count"] == 1 and amount["sample"] == [-12.5]


def test_missing_required_column_is_reported(raw_day):
    report = quality.validate_raw(raw_day.drop(columns=["merchant_id"]))
    assert not report.success
    assert "missing" in _line(report.to_text(), "merchant_id", "expect_column_to_exist")


def test_empty_frame_fails_on_row_count(raw_day):
    report = quality.validate_raw(raw_day.iloc[:0])
    assert "row count >= 1" in _line(report.to_text(), "expect_table_row_count_to_be_between")


def test_feature_suite_follows_the_declaration():
    found = _expectations(quality.feature_suite(CUSTOMER_TRANSACTION_WINDOWS))
    between = "expect_column_values_to_be_between"
    not_null = "expect_column_values_to_not_be_null"
    pair = "expect_column_pair_values_a_to_be_greater_than_b"
    for name in CUSTOMER_TRANSACTION_WINDOWS.feature_names:
        assert any(column == name for _, column in found), name
    assert (not_null, "customer_id") in found
    assert {(not_null, "customer_tx_count_1h"), (between, "customer_tx_count_1h")} <= found
    assert (not_null, "customer_amount_avg_7d") not in found  # empty window: null
    nested = {c for kind, c in found if kind == pair}
    assert nested == {
        (f"{stem}_{longer}", f"{stem}_{shorter}")
        for stem in ("customer_tx_count", "customer_amount_sum", "customer_merchant_distinct")
        for shorter, longer in (("1h", "1d"), ("1d", "7d"), ("7d", "30d"))
    }
    daily = _expectations(quality.feature_suite(CUSTOMER_DAILY_ACTIVITY))
    assert (between, "customer_daily_tx_trend") in daily
    assert (pair, ("customer_daily_amount_sum_90d", "customer_daily_amount_sum_30d")) in daily
    merchant = quality.feature_suite(MERCHANT_TRANSACTION_WINDOWS)
    rate = next(
        e
        for e in merchant.expectations
        if e.configuration.kwargs.get("column") == "merchant_fraud_risk_7d"
    )
    assert (rate.min_value, rate.max_value) == (0, 1)
    assert ("merchant_fraud_risk_30d", "merchant_fraud_risk_7d") not in {
        c for kind, c in _expectations(merchant) if kind == pair
    }


def test_adding_a_window_adds_its_checks(monkeypatch):
    monkeypatch.setitem(features.WINDOWS, "14d", timedelta(days=14))
    group = dataclasses.replace(
        CUSTOMER_TRANSACTION_WINDOWS, windows=(*CUSTOMER_TRANSACTION_WINDOWS.windows, "14d")
    )
    before = _expectations(quality.feature_suite(CUSTOMER_TRANSACTION_WINDOWS))
    after = _expectations(quality.feature_suite(group))
    pair = "expect_column_pair_values_a_to_be_greater_than_b"
    added = after - before
    for stem in ("customer_tx_count", "customer_amount_sum", "customer_merchant_distinct"):
        assert ("expect_column_values_to_not_be_null", f"{stem}_14d") in added
        assert ("expect_column_values_to_be_between", f"{stem}_14d") in added
        # nested in window-length order, not declaration order: 7d <= 14d <= 30d
        assert (pair, (f"{stem}_14d", f"{stem}_7d")) in added
        assert (pair, (f"{stem}_30d", f"{stem}_14d")) in added
        assert (pair, (f"{stem}_30d", f"{stem}_7d")) in before - after
    assert ("expect_column_values_to_be_between", "customer_amount_avg_14d") in added


def test_feature_tables_of_the_built_pipeline_pass(built_pipeline, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        built_pipeline.env(mp)
        everything = quality.validate_warehouse()
        one_day = quality.validate_warehouse(day=built_pipeline.first_day + timedelta(days=20))
    for reports in (everything, one_day):
        assert [r.table for r in reports] == ["raw.transactions"] + [
            g.name for g in features.GROUPS
        ]
        for report in reports:
            assert report.success, report.to_text()
            assert report.rows > 0
    assert one_day[0].day == "2025-03-21"
    assert all(a.rows > b.rows for a, b in zip(everything, one_day, strict=True))
    # read-only: nothing was written next to the warehouse
    assert not (built_pipeline.var_dir / "quality").exists()


@pytest.fixture(scope="module")
def feature_frames(built_pipeline) -> dict[str, pd.DataFrame]:
    con = warehouse.connect(built_pipeline.var_dir / "warehouse.duckdb", read_only=True)
    try:
        return {g.name: con.execute(f"select * from {g.name}").df() for g in features.GROUPS}
    finally:
        con.close()


def test_corrupted_feature_frames_fail_naming_the_columns(feature_frames):
    customer = feature_frames[CUSTOMER_TRANSACTION_WINDOWS.name].copy()
    assert quality.validate_features(CUSTOMER_TRANSACTION_WINDOWS, customer).success
    customer.loc[0, "customer_tx_count_1h"] = -1
    customer.loc[1, "customer_tx_count_7d"] = customer.loc[1, "customer_tx_count_30d"] + 1
    report = quality.validate_features(CUSTOMER_TRANSACTION_WINDOWS, customer)
    text = report.to_text()
    assert not report.success
    assert "e.g. -1" in _line(text, "customer_tx_count_1h ", "expect_column_values_to_be_between")
    line = _line(text, "customer_tx_count_30d >= customer_tx_count_7d")
    assert "expect_column_pair_values_a_to_be_greater_than_b" in line and "1 unexpected" in line
    # -1 in the 1h count also breaks 1h <= 1d only if the 1d count is below -1: it is not
    assert len(report.failed) == 2

    merchant = feature_frames[MERCHANT_TRANSACTION_WINDOWS.name].copy()
    merchant.loc[3, "merchant_fraud_risk_7d"] = 1.5
    report = quality.validate_features(MERCHANT_TRANSACTION_WINDOWS, merchant)
    line = _line(report.to_text(), "merchant_fraud_risk_7d", "expect_column_values_to_be_between")
    assert "in [0, 1]" in line and "e.g. 1.5" in line
    with pytest.raises(quality.DataQualityError, match="merchant_fraud_risk_7d"):
        quality.check(report)


def test_validation_writes_nothing_in_the_working_directory(raw_day, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quality._batch_definition.cache_clear()  # a fresh context, created here
    try:
        assert quality.validate_raw(raw_day, day=DAY).success
    finally:
        quality._batch_definition.cache_clear()
    assert list(tmp_path.iterdir()) == []


def test_data_quality_error_survives_pickling(raw_day):
    import pickle

    report = quality.validate_raw(raw_day.assign(amount=-1.0))
    error = pickle.loads(pickle.dumps(quality.DataQualityError(report)))
    assert error.report == report and "amount" in str(error)
