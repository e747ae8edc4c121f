"""Shared fixtures: a private var/ per test session and a real Redis server process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

import tests.properties  # noqa: F401  (registers and loads the hypothesis profile first)

# Environment variables that place skewless state; tests point them at temporary directories.
PLACEMENT_VARS = (
    "SKEWLESS_WAREHOUSE",
    "SKEWLESS_FEATURE_DIR",
    "SKEWLESS_FEAST_REGISTRY",
    "SKEWLESS_DROP_DIR",
    "SKEWLESS_MLFLOW_ARTIFACTS",
    "MLFLOW_TRACKING_URI",
    "AIRFLOW_HOME",
    "REDIS_URL",
)


@pytest.fixture
def var_dir(tmp_path, monkeypatch):
    """A fresh var/ (warehouse, exports, registry) for one test."""
    path = tmp_path / "var"
    path.mkdir()
    monkeypatch.setenv("SKEWLESS_VAR_DIR", str(path))
    for name in PLACEMENT_VARS:
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


_next_db = iter(range(1, 16))


def fresh_redis_db(redis_url: str) -> str:
    """The URL of a logical database of the session's Redis nobody else uses, emptied first:
    Feast never overwrites a key with an older or equal timestamp, so users must not share keys."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + f"/{next(_next_db)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory):
    """A real Redis Cluster (three redis-server primaries, each its own process group) for the
    session, stopped at the end. A cluster has only database 0: users empty it first
    (fresh_cluster) and must not run side by side."""
    from skewless import redis_server

    directory = tmp_path_factory.mktemp("redis-cluster")
    server = redis_server.start(directory, cluster=True)
    yield server.url
    redis_server.stop(directory)


def fresh_cluster(url: str) -> str:
    """Empties every primary of the cluster at ``url``; returns the URL."""
    from skewless import redis_server

    client = redis_server.connect(url, cluster=True)
    try:
        client.flushall(target_nodes=client.PRIMARIES)
    finally:
        client.close()
    return url


@pytest.fixture(scope="module")
def redis_db(redis_url):
    """A database of its own for one test module (see fresh_redis_db)."""
    return fresh_redis_db(redis_url)


@dataclass(frozen=True)
class BuiltPipeline:
    """A simulated warehouse after `dbt build` and `feast apply` (not materialized)."""

    var_dir: Path
    cutoff: datetime  # the dbt cutoff: midnight after the last event
    first_day: date
    days: int

    def env(self, mp: pytest.MonkeyPatch) -> None:
        """Points skewless at this pipeline's var/ (use on a MonkeyPatch)."""
        mp.setenv("SKEWLESS_VAR_DIR", str(self.var_dir))
        for name in PLACEMENT_VARS:
            mp.delenv(name, raising=False)


@pytest.fixture(scope="session")
def built_pipeline(tmp_path_factory, redis_url) -> BuiltPipeline:
    """Shared, read-only for tests: 150 customers x 45 days through the real dbt build and feast
    apply. Tests that write must copy ``var_dir`` first (shutil.copytree)."""
    from skewless import importer, pipeline, settings, simulate, warehouse

    var_dir = tmp_path_factory.mktemp("built") / "var"
    first_day, days = date(2025, 3, 1), 45
    built = BuiltPipeline(var_dir, datetime(2025, 4, 15), first_day, days)
    with pytest.MonkeyPatch.context() as mp:
        built.env(mp)
        cfg = settings.load()
        frame = simulate.generate(customers=150, days=days, seed=7, start=first_day)
        path = simulate.write(frame, var_dir / "raw" / "transactions.parquet")
        assert importer.import_transactions(path)["rows_loaded"] == len(frame)
        pipeline.build(cfg, redis_url=redis_url)
        con = warehouse.connect(cfg.warehouse_path, read_only=True)
        (cutoff,) = con.execute(
            "select max(event_timestamp) from customer_transaction_windows"
        ).fetchone()
        con.close()
    assert cutoff == built.cutoff
    return built
