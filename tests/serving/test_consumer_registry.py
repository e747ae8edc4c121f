"""The stream consumer checks its push sources in the Feast registry before it starts."""

from __future__ import annotations

import logging

import pytest

from serving.stream_consumer import StreamConsumer
from skewless import pipeline, settings


def test_a_registry_without_the_push_sources_is_a_clear_error_after_retries(
    var_dir, redis_url, caplog
):
    cfg = settings.load()  # a fresh var/: no `feast apply` has written a registry
    store = pipeline.feature_store(cfg, redis_url)
    consumer = StreamConsumer(None, store, cfg=cfg)
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError) as caught:
        consumer.check_store(attempts=3, delay=0.01)
    assert "push source 'customer_transaction_windows_push' is not in the Feast registry" in str(
        caught.value
    )
    assert "run `skewless build` (feast apply)" in str(caught.value)
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert [m[-len("(1/3)") :] for m in retries] == ["(1/3)", "(2/3)"]
