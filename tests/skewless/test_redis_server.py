"""The private Redis: a real redis-server process, started and stopped by its process group."""

from __future__ import annotations

import os

import pytest
import redis

from skewless import redis_server


def test_start_status_stop_leaves_nothing_running(tmp_path):
    server = redis_server.start(tmp_path)
    try:
        assert redis_server.status(tmp_path) == server
        assert redis_server.start(tmp_path) == server  # idempotent: no second server
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        assert redis_server.stop(tmp_path)
    assert redis_server.status(tmp_path) is None
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)
    assert not redis_server.stop(tmp_path)


def test_configured_url_is_used_and_nothing_starts(tmp_path, redis_url):
    assert redis_server.resolve_url(redis_url, tmp_path) == redis_url
    assert not (tmp_path / redis_server.STATE_FILE).exists()


def test_resolve_without_server_can_refuse_to_start(tmp_path):
    with pytest.raises(redis_server.RedisUnavailable, match="skewless redis start"):
        redis_server.resolve_url(None, tmp_path, start_if_needed=False)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/0", "127.0.0.1:6380,db=0"),
        ("redis://redis:6379", "redis:6379,db=0"),
        ("redis://:s%40cret@cache:6379/2", "cache:6379,db=2,password=s@cret"),
        (
            "rediss://app:pw@managed.example:6380/1",
            "managed.example:6380,db=1,username=app,password=pw,ssl=true",
        ),
    ],
)
def test_feast_connection_string(url, expected):
    assert redis_server.feast_connection_string(url) == expected


def test_feast_connection_string_rejects_other_schemes():
    with pytest.raises(ValueError, match="REDIS_URL"):
        redis_server.feast_connection_string("http://localhost:6379")
