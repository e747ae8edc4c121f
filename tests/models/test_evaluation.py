"""Holdout metrics as fraud teams read them: card precision@k, the alert threshold rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import evaluation

DAY1, DAY2 = pd.Timestamp("2025-03-01 10:00"), pd.Timestamp("2025-03-02 10:00")


def test_card_precision_ranks_cards_by_their_riskiest_transaction_and_drops_found_cards():
    rows = pd.DataFrame(
        [
            # day 1: card a (fraud) has the top score; b's best beats c's; c's fraud ranks last
            ("a", DAY1, 0.9, 1),
            ("a", DAY1, 0.1, 0),
            ("b", DAY1, 0.8, 0),
            ("c", DAY1, 0.2, 1),
            ("c", DAY1, 0.3, 0),
            # day 2: a, found on day 1, is blocked; b and c compete again
            ("a", DAY2, 0.99, 1),
            ("b", DAY2, 0.5, 1),
            ("c", DAY2, 0.6, 0),
        ],
        columns=["card", "at", "score", "y"],
    )
    by_day = evaluation.card_precision_at_k_by_day(
        rows["y"], rows["score"], rows["at"], rows["card"], k=2
    )
    # day 1 top-2 cards: a (0.9, fraud), b (0.8) -> 1/2; day 2 without a: c (0.6), b (0.5, fraud)
    assert by_day == {"2025-03-01": 0.5, "2025-03-02": 0.5}
    # fewer cards than k still divide by k
    one = evaluation.card_precision_at_k_by_day([1], [0.5], [DAY1], ["a"], k=4)
    assert one == {"2025-03-01": 0.25}


def test_the_capacity_rule_alerts_the_expected_number_per_day():
    rng = np.random.default_rng(0)
    times = pd.Series(
        pd.Timestamp("2025-03-01") + pd.to_timedelta(rng.integers(0, 7 * 86400, 7000), "s")
    )
    scores = rng.random(7000)
    threshold = evaluation.capacity_threshold(scores, times, alerts_per_day=100)
    assert (scores >= threshold).sum() == 700  # 100 a day over the 7 days
    assert evaluation.capacity_threshold(scores[:50], times[:50], 100) == scores[:50].min()
    config = {"alert_threshold": {"rule": "daily_capacity"}, "top_k_per_day": 10}
    value, rule = evaluation.derive_threshold(config, scores, times)
    assert rule == "daily_capacity(10)" and (scores >= value).sum() == 70
    assert evaluation.derive_threshold({"alert_threshold": 0.3}, scores, times) == (0.3, "fixed")


@pytest.mark.parametrize(
    "setting", [{"rule": "best_f1"}, "high", True, {"rule": "daily_capacity", "alerts_per_day": 0}]
)
def test_an_unknown_threshold_rule_is_a_clear_error(setting):
    config = {"alert_threshold": setting, "top_k_per_day": 10}
    with pytest.raises(ValueError, match="alert_threshold"):
        evaluation.derive_threshold(config, [0.1, 0.2], [DAY1, DAY2])
