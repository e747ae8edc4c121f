"""The materialization writer (skewless/online_writer.py) against `feast materialize` itself.

On the shared built pipeline, Feast's FeatureStore.materialize writes one Redis database and the
writer another, for the same views and [start, end]: every key, field and value byte must be the
same. Then both are run again with an earlier end (older rows) and with the same end: Feast's rule
- a row never replaces a newer or equally new one - leaves both databases unchanged and equal.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from skewless import pipeline, settings
from tests.helpers import fresh_redis_db

pytestmark = pytest.mark.slow


def _dump(url: str) -> dict[bytes, dict[bytes, bytes]]:
    client = redis.Redis.from_url(url)
    try:
        return {key: client.hgetall(key) for key in client.scan_iter(count=1000)}
    finally:
        client.close()


@pytest.fixture
def databases(redis_url):
    """(Feast's database URL, the writer's), two fresh databases, emptied afterwards."""
    urls = fresh_redis_db(redis_url), fresh_redis_db(redis_url)
    yield urls
    for url in urls:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


def _materialize_both(cfg, urls: tuple[str, str], **window) -> dict:
    """The same window materialized by Feast into the first database, by the writer into the
    second."""
    return {
        "feast": pipeline.materialize(cfg, redis_url=urls[0], writer="feast", **window),
        "skewless": pipeline.materialize(cfg, redis_url=urls[1], **window),
    }


@pytest.fixture
def both(built_pipeline, databases):
    """(cfg, the Feast database URL, the writer's database URL), each materialized at the cutoff."""
    with pytest.MonkeyPatch.context() as mp:
        built_pipeline.env(mp)
        cfg = settings.load()
        end = built_pipeline.cutoff
        yield cfg, *databases, _materialize_both(cfg, databases, end=end), end


def test_the_writer_writes_what_feast_materialize_writes(both):
    _, feast_url, writer_url, ran, _ = both
    assert ran["feast"]["writer"] == "feast" and ran["skewless"]["writer"] == "skewless"
    by_feast, by_writer = _dump(feast_url), _dump(writer_url)
    assert len(by_feast) > 100 and set(by_writer) == set(by_feast)
    differing = [key for key in by_feast if by_writer[key] != by_feast[key]]
    assert differing == [], (by_feast[differing[0]], by_writer[differing[0]])
    fields = {len(values) for values in by_feast.values()}
    assert min(fields) >= 2  # a timestamp and at least one feature per view
    # one row written per (entity key, view): a `_ts:<view>` field each
    rows = sum(view["written"] for view in ran["skewless"]["views"].values())
    assert rows == sum(f.startswith(b"_ts:") for v in by_feast.values() for f in v)
    print(
        f"{len(by_feast)} keys, feast {ran['feast']['seconds']} s, writer {ran['skewless']['seconds']} s"
    )


def test_older_or_equal_rows_never_replace_newer_ones(both):
    cfg, feast_url, writer_url, _, end = both
    before = _dump(writer_url)
    for when in (end - timedelta(days=3), end):
        pipeline.materialize(cfg, end=when, redis_url=feast_url, writer="feast")
        again = pipeline.materialize(cfg, end=when, redis_url=writer_url)
        assert sum(v["written"] for v in again["views"].values()) == 0, again
        assert all(v["skipped_not_newer"] == v["rows"] for v in again["views"].values())
    assert _dump(writer_url) == before == _dump(feast_url)


def test_a_start_bound_and_an_empty_window_are_the_same_as_feast(built_pipeline, databases):
    with pytest.MonkeyPatch.context() as mp:
        built_pipeline.env(mp)
        cfg = settings.load()
        end = built_pipeline.cutoff
        for start, stop in ((end - timedelta(days=2), end - timedelta(days=1)), (end, end)):
            _materialize_both(cfg, databases, start=start, end=stop)
    feast_url, writer_url = databases
    assert _dump(writer_url) == _dump(feast_url)
