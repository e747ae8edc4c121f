"""Shared fixtures: a private var/ per test session and a real Redis server process."""

from __future__ import annotations

import pytest


@pytest.fixture
def var_dir(tmp_path, monkeypatch):
    """A fresh var/ (warehouse, exports, registry) for one test."""
    path = tmp_path / "var"
    path.mkdir()
    monkeypatch.setenv("SKEWLESS_VAR_DIR", str(path))
    for name in ("SKEWLESS_WAREHOUSE", "SKEWLESS_FEATURE_DIR", "SKEWLESS_FEAST_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server process on loopback for the whole test session, stopped at the end."""
    from skewless import redis_server

    directory = tmp_path_factory.mktemp("redis")
    server = redis_server.start(directory)
    yield server.url
    redis_server.stop(directory)
