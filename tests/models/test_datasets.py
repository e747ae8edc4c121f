"""Training frames and the time-based split: windows, the gap, as_of, Feast = warehouse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models import datasets, splits, training
from skewless import settings, warehouse
from skewless.features import REQUEST_FEATURES, group

pytestmark = pytest.mark.slow


@pytest.fixture
def shared(built_pipeline, monkeypatch):
    """The shared pipeline, read-only (nothing here writes)."""
    built_pipeline.env(monkeypatch)
    monkeypatch.delenv("SKEWLESS_MODEL_CONFIG", raising=False)
    return built_pipeline


def test_feature_columns_follow_the_declaration():
    fraud = datasets.feature_columns("fraud")
    assert fraud == (
        group("customer_transaction_windows").feature_names
        + group("merchant_transaction_windows").feature_names
        + [f.name for f in REQUEST_FEATURES]
    )
    assert datasets.feature_columns("churn") == group("customer_daily_activity").feature_names
    with pytest.raises(ValueError, match="task='nope'"):
        datasets.feature_columns("nope")


@pytest.mark.parametrize(
    ("windows", "argument"),
    [
        ({"train_start": datetime(2025, 4, 1), "train_end": datetime(2025, 3, 1)}, "train_start"),
        ({"test_start": datetime(2025, 4, 15), "test_end": datetime(2025, 4, 8)}, "test_start"),
        (
            {
                "train_end": datetime(2025, 4, 10),
                "test_start": datetime(2025, 4, 8),
                "test_end": datetime(2025, 4, 15),
            },
            "train_end",
        ),
    ],
)
def test_inconsistent_windows_are_refused_naming_the_argument(shared, windows, argument):
    with pytest.raises(ValueError, match=argument):
        splits.resolve_windows("fraud", **windows)


def test_windows_without_labeled_rows_are_refused(shared):
    with pytest.raises(ValueError, match="train window .* no labeled rows"):
        training.train(
            "fraud",
            train_start=datetime(2020, 1, 1),
            train_end=datetime(2020, 2, 1),
            register=False,
        )
    with pytest.raises(ValueError, match="test window .* no labeled rows"):
        training.train(
            "fraud", test_start=datetime(2026, 1, 1), test_end=datetime(2026, 1, 8), register=False
        )


def test_default_fraud_split_leaves_a_gap_of_the_label_delay(shared):
    cfg = settings.load()
    w = splits.resolve_windows("fraud")
    # the last 7 days with labels, the label delay, everything before
    assert (w.test_start, w.test_end) == (datetime(2025, 4, 8), datetime(2025, 4, 15))
    assert w.test_start - w.train_end == cfg.label_delay == timedelta(days=7)
    assert w.train_start == datetime(2025, 3, 1)
    frame = datasets.load_windows(
        "fraud", [(w.train_start, w.train_end), (w.test_start, w.test_end)]
    )
    train, test = frame.subset(w.train_start, w.train_end), frame.subset(w.test_start, w.test_end)
    assert len(train) + len(test) == len(frame)  # nothing from inside the gap was loaded
    assert train.keys["event_timestamp"].max() < w.train_end
    assert test.keys["event_timestamp"].min() >= w.test_start
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    (in_gap,) = con.execute(
        "select count(*) from fraud_training_set where event_timestamp >= ? and event_timestamp < ?",
        [w.train_end, w.test_start],
    ).fetchone()
    con.close()
    assert in_gap > 0  # the gap held data, and none of it is in either set
    assert list(train.X.columns) == datasets.feature_columns("fraud")


def test_default_churn_split_leaves_a_gap_of_the_horizon(shared):
    # 45 days of data leave ~2 weeks of churn rows: too short for train + 30-day gap + test
    with pytest.raises(ValueError, match="train_start=.* too short for the default split"):
        splits.resolve_windows("churn_30d")
    w = splits.resolve_windows("churn", train_start=datetime(2025, 1, 1))
    assert w.test_end == datetime(2025, 3, 16)  # the midnight after the last observable row
    assert w.test_start - w.train_end == timedelta(days=30)
    assert w.test_end - w.test_start == timedelta(days=7)


def test_a_gap_shorter_than_the_default_is_allowed_with_a_warning(shared):
    with pytest.warns(UserWarning, match="shorter than the fraud default"):
        w = splits.resolve_windows(
            "fraud", train_end=datetime(2025, 4, 8), test_start=datetime(2025, 4, 8)
        )
    assert w.train_end == w.test_start


def test_as_of_keeps_only_known_labels_and_ends_the_test_window_a_delay_earlier(shared):
    as_of = datetime(2025, 4, 10)
    w = splits.resolve_windows("fraud", as_of=as_of)
    assert w.test_end == as_of - settings.load().label_delay
    assert splits.resolve_windows("fraud", as_of=as_of.replace(tzinfo=UTC)) == w  # e.g. Airflow's
    frame = datasets.load_training_frame("fraud", w.train_start, w.test_end, as_of=as_of)
    assert (frame.keys["label_timestamp"] <= as_of).all()
    everything = datasets.load_training_frame("fraud", w.train_start, w.test_end)
    assert len(frame) < len(everything)  # some fraud labels of the last days were not known yet

    churn = datasets.load_training_frame(
        "churn", datetime(2025, 3, 1), datetime(2025, 4, 15), as_of=datetime(2025, 4, 10)
    )
    assert (churn.keys["event_timestamp"] + timedelta(days=30) <= datetime(2025, 4, 10)).all()


def test_feast_and_warehouse_give_the_same_frame(shared):
    start, end = datetime(2025, 4, 1), datetime(2025, 4, 8)
    from_warehouse = datasets.load_training_frame("fraud", start, end, source="warehouse")
    from_feast = datasets.load_training_frame("fraud", start, end, source="feast")
    assert len(from_feast) == len(from_warehouse) > 100
    assert from_feast.fingerprint() == from_warehouse.fingerprint()
    # the request-time features are there, from the one shared function
    assert from_feast.X["amount"].equals(from_feast.keys.join(from_feast.X)["amount"])
    assert from_feast.X["hour_of_day"].between(0, 23).all()


def test_arrival_source_differs_from_the_warehouse_on_overtaken_transactions_only(shared):
    """The arrival-aware training set: the same labelled rows; the features differ only on the
    transactions scored before an earlier event of their customer or merchant had arrived."""
    start, end = datetime(2025, 3, 1), datetime(2025, 4, 15)
    offline = datasets.load_training_frame("fraud", start, end, source="warehouse")
    arrived = datasets.load_training_frame("fraud", start, end, source="arrival")
    assert arrived.source == "arrival" and len(arrived) == len(offline) > 1000
    assert arrived.keys.equals(offline.keys) and arrived.y.equals(offline.y)
    con = warehouse.connect(settings.load().warehouse_path, read_only=True)
    try:
        overtaken = {
            row[0]
            for key in ("customer_id", "merchant_id")
            for row in con.execute(
                "select transaction_id from (select transaction_id, arrival_timestamp,"
                f" max(arrival_timestamp) over (partition by {key} order by event_timestamp"
                "  range between unbounded preceding and current row exclude group) as latest"
                " from stg_raw__transactions) where latest > arrival_timestamp"
            ).fetchall()
        }
    finally:
        con.close()
    changed = ~((arrived.X == offline.X) | (arrived.X.isna() & offline.X.isna())).all(axis=1)
    assert set(offline.keys["transaction_id"][changed]) <= overtaken
    with pytest.raises(ValueError, match="source arrival: churn_30d is a batch task"):
        datasets.load_training_frame("churn", start, end, source="arrival")
