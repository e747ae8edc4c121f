"""Training sources against serving modes (monitoring/skew_sources.py) on the shared pipeline."""

from __future__ import annotations

from datetime import datetime

import pytest

from models import training
from monitoring import skew_sources
from skewless import settings

pytestmark = pytest.mark.slow

TRAIN = (datetime(2025, 3, 1), datetime(2025, 4, 1))
TEST = (datetime(2025, 4, 8), datetime(2025, 4, 15))


def test_sources_are_scored_as_training_scores_them_and_unserved_ones_are_skipped(pipeline_copy):
    result = skew_sources.compare(settings.load(), TRAIN, TEST)
    # nothing was served here: the serving-log sources and the modes say why they are missing
    assert set(result["table"]) == {"warehouse", "arrival"}
    assert result["modes"] == [skew_sources.OFFLINE]
    for name in ("serving-log:exact", "mode exact", "mode materialized"):
        assert "no served request" in result["skipped"][name]
    # the warehouse model on the offline truth is `skewless train`'s model on its holdout
    trained = training.train(
        "fraud",
        train_start=TRAIN[0],
        train_end=TRAIN[1],
        test_start=TEST[0],
        test_end=TEST[1],
        register=False,
    )
    row = result["table"]["warehouse"]
    assert row["threshold"] == trained["alert_threshold"]
    for name in ("average_precision", "recall_at_threshold", "card_precision_at_k", "roc_auc"):
        assert row[skew_sources.OFFLINE][name] == round(trained["metrics"][name], 4)
    assert row["train_rows"] == trained["train_rows"]
    assert result["best"][skew_sources.OFFLINE]["source"] in result["table"]
    text = skew_sources.format_table(result)
    assert "warehouse" in text and "skipped serving-log:streaming" in text
