"""Shared fixtures: a private var/ per test, a real Redis server process (and a real Redis
Cluster), the simulated pipeline built once per session, and the sidecar on a trained champion.

``serving_env`` (once per session) copies the shared built pipeline, trains the fraud champion in
the copy's MLflow and materializes the features into a Redis database of their own on the
session's server. ``app`` builds a sidecar on them; each test starts with no sidecar keys (serving
log, exact-mode state, churn scores) while Feast's keys stay.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime

import pytest

import tests.properties  # noqa: F401  (registers and loads the hypothesis profile first)
from tests.helpers import (
    DATABASES,
    PLACEMENT_VARS,
    BuiltPipeline,
    ServingEnv,
    clear_sidecar_keys,
    fresh_redis_db,
    headless_chromium,
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
    server = redis_server.start(directory, databases=DATABASES)
    yield server.url
    redis_server.stop(directory)


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


@pytest.fixture(scope="module")
def redis_db(redis_url):
    """A database of its own for one test module (see fresh_redis_db)."""
    return fresh_redis_db(redis_url)


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


@pytest.fixture(scope="session")
def serving_env(built_pipeline, redis_url, tmp_path_factory) -> ServingEnv:

    from models import training
    from skewless import pipeline, settings

    var_dir = tmp_path_factory.mktemp("serving") / "var"
    shutil.copytree(built_pipeline.var_dir, var_dir)
    url = fresh_redis_db(redis_url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKEWLESS_VAR_DIR", str(var_dir))
        for name in (*PLACEMENT_VARS, "SKEWLESS_MODEL_CONFIG"):
            mp.delenv(name, raising=False)
        cfg = settings.load()
        result = training.train("fraud", cfg=cfg)
        pipeline.materialize(cfg, end=built_pipeline.cutoff, redis_url=url)
    env = ServingEnv(
        var_dir,
        cfg,
        url,
        built_pipeline.cutoff,
        result["model_version"],
        result["run_id"],
        result["alert_threshold"],
    )
    yield env
    import redis

    leftover = redis.Redis.from_url(url)
    leftover.flushdb()
    leftover.close()


@pytest.fixture(scope="session")
def transactions(serving_env):
    """The warehouse's staged transactions (read-only), in event-time order."""
    from skewless import warehouse

    con = warehouse.connect(serving_env.cfg.warehouse_path, read_only=True)
    try:
        return con.execute(
            "select * from stg_raw__transactions order by event_timestamp, transaction_id"
        ).fetchdf()
    finally:
        con.close()


@pytest.fixture
def redis_client(serving_env):
    """The serving tests' database on the session's Redis, without sidecar keys."""
    import redis

    client = redis.Redis.from_url(serving_env.redis_url)
    clear_sidecar_keys(client)
    yield client
    clear_sidecar_keys(client)
    client.close()


@pytest.fixture
def make_app(serving_env, redis_client):
    """Builds a sidecar on the session's model and Redis; ``KEY=...`` leaves a key unset (to
    come from the environment)."""
    from serving.app import create_app

    apps = []

    def make(**config):
        base = {
            "SETTINGS": serving_env.cfg,
            "REDIS_URL": serving_env.redis_url,
            "MODEL_CHECK_SECONDS": 0,
            "API_TOKEN": None,
            "SERVING_MODE": "materialized",
        }
        merged = {k: v for k, v in {**base, **config}.items() if v is not ...}  # ...: drop it
        app = create_app(merged)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["skewless"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless chromium per module (tests.helpers.headless_chromium)."""
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver
