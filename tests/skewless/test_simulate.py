"""The simulator: reproducible, on contract, and each scenario visible in the data."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from skewless.simulate import COLUMNS, SCENARIOS, churned_customers, generate, write

SMALL = {"customers": 300, "days": 30, "seed": 7}


@pytest.fixture(scope="module")
def small():
    return generate(**SMALL)


@pytest.fixture(scope="module")
def busy():
    """Enough transactions (~90K, the handbook's 2 a day) for the rates to be measurable."""
    return generate(customers=1500, days=60, seed=11, tx_per_day=2.0, return_scenarios=True)


def test_same_seed_same_frame_other_seed_other_data(small):
    pd.testing.assert_frame_equal(small, generate(**SMALL))
    other = generate(**{**SMALL, "seed": 8})
    assert not small["amount"].equals(other["amount"])


def test_schema_and_dtypes(small):
    assert tuple(small.columns) == COLUMNS
    for column in ("transaction_id", "customer_id", "merchant_id"):
        assert small[column].dtype == object
        assert small[column].map(type).eq(str).all()
    for column in ("event_timestamp", "arrival_timestamp", "label_timestamp"):
        assert small[column].dtype == "datetime64[ns]"
    assert small["amount"].dtype == np.float64
    assert small["is_fraud"].dtype == np.int8
    assert set(small["is_fraud"].unique()) <= {0, 1}
    assert small["customer_id"].str.startswith("c").all()
    assert small["merchant_id"].str.startswith("m").all()
    assert len(small) > 1000


def test_ids_unique_and_rows_sorted_by_event_time(small):
    assert small["transaction_id"].is_unique
    ordered = small.sort_values(["event_timestamp", "transaction_id"], ignore_index=True)
    pd.testing.assert_frame_equal(small, ordered)
    assert small["transaction_id"].is_monotonic_increasing


def test_values_in_range(small):
    assert (small["amount"] >= 0).all()
    assert np.allclose(small["amount"], small["amount"].round(2))
    assert small["event_timestamp"].min() >= pd.Timestamp("2025-01-01")
    assert small["event_timestamp"].max() < pd.Timestamp("2025-01-31")
    assert (small["arrival_timestamp"] >= small["event_timestamp"]).all()
    assert (small["label_timestamp"] >= small["event_timestamp"]).all()


def test_start_and_size_follow_the_arguments():
    frame = generate(customers=200, days=10, start=date(2024, 6, 1), tx_per_day=1.0)
    assert frame["event_timestamp"].dt.date.between(date(2024, 6, 1), date(2024, 6, 10)).all()
    assert 1000 < len(frame) < 3000  # ~ 200 x 10 x 1, less the churners' decline
    assert frame["merchant_id"].nunique() <= 400


def test_every_fraud_scenario_produces_frauds(busy):
    frame, scenarios = busy
    counts = scenarios["scenario"].value_counts()
    assert set(counts.index) == set(SCENARIOS) - {"genuine"}
    assert (counts > 20).all(), counts
    fraud_ids = set(frame.loc[frame["is_fraud"] == 1, "transaction_id"])
    assert set(scenarios["transaction_id"]) == fraud_ids
    by_id = frame.set_index("transaction_id")
    outliers = scenarios.loc[scenarios["scenario"] == "amount_outlier", "transaction_id"]
    assert (by_id.loc[outliers, "amount"] > 220).all()
    genuine = frame[frame["is_fraud"] == 0]
    assert (genuine["amount"] <= 220).all()


def test_compromised_terminals_and_cards_leave_their_mark(busy):
    frame, scenarios = busy
    tagged = frame.merge(scenarios, on="transaction_id", how="left")
    terminal = tagged[tagged["scenario"] == "compromised_terminal"]
    # A compromised terminal's frauds span at most 28 days from the compromise day, as a
    # streak; cards yield five-fold amounts.
    spans = terminal.groupby("merchant_id")["event_timestamp"].agg(lambda t: t.max() - t.min())
    assert (spans < pd.Timedelta(days=56)).all()
    card = tagged[tagged["scenario"] == "compromised_card"]
    assert card["amount"].mean() > 3 * tagged.loc[tagged["is_fraud"] == 0, "amount"].mean()


def test_fraud_rate_is_realistic_at_default_settings():
    frame = generate(customers=2000, days=60, seed=3)
    assert 0.003 < frame["is_fraud"].mean() < 0.015


def test_late_fraction_close_to_parameter(busy):
    frame, _ = busy
    late = frame["arrival_timestamp"] > frame["event_timestamp"]
    assert abs(late.mean() - 0.02) < 0.005
    delay = (frame["arrival_timestamp"] - frame["event_timestamp"])[late]
    assert delay.min() >= pd.Timedelta(minutes=1)
    assert delay.max() <= pd.Timedelta(hours=6)
    none_late = generate(**SMALL, late_fraction=0.0)
    assert (none_late["arrival_timestamp"] == none_late["event_timestamp"]).all()
    many_late = generate(**SMALL, late_fraction=0.5)
    assert 0.45 < (many_late["arrival_timestamp"] > many_late["event_timestamp"]).mean() < 0.55


def test_label_delay(busy):
    frame, _ = busy
    delay = frame["label_timestamp"] - frame["event_timestamp"]
    fraud = frame["is_fraud"] == 1
    assert (delay[~fraud] == pd.Timedelta(days=7)).all()
    assert delay[fraud].between(pd.Timedelta(days=1), pd.Timedelta(days=14)).all()
    assert delay[fraud].std() > pd.Timedelta(days=2)
    # Labels due after the period keep their value.
    assert (frame["label_timestamp"] > pd.Timestamp("2025-03-02")).any()
    quick = generate(**SMALL, label_delay_days=0.5)
    quick_delay = quick["label_timestamp"] - quick["event_timestamp"]
    assert (quick_delay[quick["is_fraud"] == 0] == pd.Timedelta(hours=12)).all()


def test_churners_stop_after_a_decline():
    arguments = {"customers": 2000, "days": 60, "seed": 5, "churn_fraction": 0.5}
    frame = generate(**arguments, tx_per_day=2.0)
    churned = churned_customers(**arguments)
    assert len(churned) == 1000
    assert churned["customer_id"].is_unique
    merged = frame.merge(churned, on="customer_id")
    assert (merged["event_timestamp"] < merged["churn_date"]).all()

    # Transactions in the week before churning vs. a week four weeks earlier, for the churners
    # whose churn leaves room for both windows.
    days_before = (merged["churn_date"] - merged["event_timestamp"]) / pd.Timedelta(days=1)
    eligible = merged["churn_date"] >= pd.Timestamp("2025-01-01") + pd.Timedelta(days=28)
    last_week = (eligible & (days_before <= 7)).sum()
    earlier_week = (eligible & days_before.between(21, 28, inclusive="right")).sum()
    assert last_week < 0.5 * earlier_week

    # Customers who do not churn keep transacting until the end.
    stayers = frame[~frame["customer_id"].isin(churned["customer_id"])]
    last_seen = stayers.groupby("customer_id")["event_timestamp"].max()
    assert (last_seen >= pd.Timestamp("2025-02-20")).mean() > 0.9


def test_no_churn_when_fraction_is_zero():
    assert churned_customers(customers=100, churn_fraction=0.0).empty


def test_empty_result_keeps_the_schema():
    frame = generate(customers=1, days=1, tx_per_day=1e-9)
    assert frame.empty
    assert tuple(frame.columns) == COLUMNS
    assert frame["event_timestamp"].dtype == "datetime64[ns]"


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("customers", 0),
        ("customers", -5),
        ("customers", 2.5),
        ("days", 0),
        ("seed", -1),
        ("tx_per_day", 0),
        ("terminals", 0),
        ("churn_fraction", 1.5),
        ("late_fraction", -0.1),
        ("label_delay_days", -1),
        ("start", "2025-01-01"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(argument, value):
    with pytest.raises(ValueError, match=argument):
        generate(**{**SMALL, argument: value})


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_round_trip(small, tmp_path, suffix):
    path = write(small, tmp_path / "nested" / f"transactions{suffix}")
    assert path.exists()
    if suffix == ".parquet":
        back = pd.read_parquet(path)
    else:
        timestamps = ["event_timestamp", "arrival_timestamp", "label_timestamp"]
        back = pd.read_csv(path, parse_dates=timestamps, dtype={"is_fraud": np.int8})
    pd.testing.assert_frame_equal(back, small, check_dtype=suffix == ".parquet")


def test_write_rejects_other_suffixes(small, tmp_path):
    with pytest.raises(ValueError, match="path"):
        write(small, tmp_path / "transactions.json")
