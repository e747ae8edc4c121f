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


def test_feast_connection_string_of_a_cluster_has_no_database():
    url = "rediss://:pw@node-1.cache.example:6379/0"
    assert redis_server.feast_connection_string(url, cluster=True) == (
        "node-1.cache.example:6379,password=pw,ssl=true"
    )
    with pytest.raises(ValueError, match="only database 0"):
        redis_server.feast_connection_string("redis://node:6379/2", cluster=True)


def test_private_cluster_start_status_stop_leaves_nothing_running(tmp_path):
    """SKEWLESS_REDIS_CLUSTER=true without REDIS_URL: a real three-primary cluster, every node in
    its own process group, refused as a single server and stopped whole."""
    from redis.cluster import RedisCluster

    url = redis_server.resolve_url(None, tmp_path, cluster=True)
    server = redis_server.status(tmp_path)
    try:
        assert server.cluster and server.url == url and len(server.pids) == 3
        client = redis_server.connect(url, cluster=True)
        assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
        keys = [f"k{i}" for i in range(20)]
        for key in keys:
            client.set(key, key)
        assert [client.get(k) for k in keys] == [k.encode() for k in keys]
        client.close()
        with pytest.raises(redis_server.RedisUnavailable, match="is a cluster but"):
            redis_server.resolve_url(None, tmp_path, cluster=False)
        assert redis_server.resolve_url(None, tmp_path, cluster=True) == url  # no second one
    finally:
        assert redis_server.stop(tmp_path)
    for pid in server.pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert redis_server.status(tmp_path) is None
