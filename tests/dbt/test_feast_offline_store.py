"""Feast's offline store is chosen by configuration, not code.

feature_repo/feature_store.yaml is the embedded environment (duckdb over dbt's Parquet exports);
feature_repo/feature_store.postgres.yaml puts the offline store on PostgreSQL. Feast's own
FEAST_FS_YAML_FILE_PATH picks the file for the CLI and for FeatureStore(repo_path=...) alike, and
data_sources.py reads the same selection to declare Parquet or PostgreSQL sources.

The slow test runs both for real: the same raw transactions in DuckDB and in a private PostgreSQL
(tests/postgres.py), `dbt run` on both targets, `feast apply` with each file (one registry each),
and point-in-time retrieval over fraud_v1 for the fraud_training_set's transactions from both
offline stores; every feature value must agree, and equal the dbt training set.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from skewless.settings import PROJECT_ROOT
from tests.engines import (
    assert_same_retrieval,
    frame_differences,
    fraud_features,
    fraud_training_set,
    retrieve_fraud_v1,
    use_store,
)
from tests.helpers import PLACEMENT_VARS
from tests.postgres import copy_raw_transactions, private_postgres, settings_for

REPO = PROJECT_ROOT / "feature_repo"
PG_ENV = {
    "SKEWLESS_PG_HOST": "pg.internal",
    "SKEWLESS_PG_PORT": "6543",
    "SKEWLESS_PG_DBNAME": "features",
    "SKEWLESS_PG_SCHEMA": "marts",
    "SKEWLESS_PG_USER": "feast",
    "SKEWLESS_PG_PASSWORD": "secret",
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("SKEWLESS_FEAST_REGISTRY", str(tmp_path / "registry.db"))
    monkeypatch.setenv("SKEWLESS_FEAST_REDIS", "127.0.0.1:6379,db=0")
    monkeypatch.setenv("SKEWLESS_FEAST_REDIS_TYPE", "redis")
    monkeypatch.delenv("FEAST_FS_YAML_FILE_PATH", raising=False)
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def _loaded():
    """The RepoConfig exactly as Feast resolves and loads it for this repo."""
    from feast.repo_config import load_repo_config
    from feast.utils import get_default_yaml_file_path

    return load_repo_config(REPO, get_default_yaml_file_path(REPO))


def test_the_default_offline_store_is_duckdb(env):
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig

    config = _loaded()
    assert isinstance(config.offline_store, DuckDBOfflineStoreConfig)
    assert config.online_config["type"] == "redis"


def test_feast_fs_yaml_file_path_selects_the_postgres_offline_store(env):
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
        PostgreSQLOfflineStoreConfig,
    )

    env.setenv("FEAST_FS_YAML_FILE_PATH", str(REPO / "feature_store.postgres.yaml"))
    config = _loaded()
    store = config.offline_store
    assert isinstance(store, PostgreSQLOfflineStoreConfig)
    # the connection comes from the environment
    assert (store.host, store.port, store.database) == ("pg.internal", 6543, "features")
    assert (store.db_schema, store.user, store.password) == ("marts", "feast", "secret")


def test_the_environments_differ_only_in_the_offline_store():
    def without_offline_store(path: Path) -> dict:
        config = yaml.safe_load(path.read_text())
        config.pop("offline_store")
        return config

    embedded = without_offline_store(REPO / "feature_store.yaml")
    for other in ("feature_store.postgres.yaml", "feature_store.spark.yaml"):
        assert without_offline_store(REPO / other) == embedded, other


def test_feast_fs_yaml_file_path_selects_the_spark_offline_store(env, tmp_path):
    """The Spark session Feast starts is the dbt profile's (skewless/spark.py): same master,
    tables and metastore."""
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        SparkOfflineStoreConfig,
    )

    from skewless import pipeline, settings, spark

    env.setenv("SKEWLESS_VAR_DIR", str(tmp_path / "var"))
    env.delenv("SKEWLESS_SPARK_DIR", raising=False)
    env.setenv("SKEWLESS_SPARK_MASTER", "spark://spark.internal:7077")
    cfg = settings.load()
    for key, value in pipeline.dbt_environment(cfg).items():
        env.setenv(key, value)
    env.setenv("FEAST_FS_YAML_FILE_PATH", str(REPO / "feature_store.spark.yaml"))
    store = _loaded().offline_store
    assert isinstance(store, SparkOfflineStoreConfig)
    expected = spark.conf(cfg) | {"spark.sql.catalogImplementation": "hive"}
    expected.pop("spark.sql.ansi.enabled")  # dbt-spark's own setting
    assert store.spark_conf == expected
    assert expected["spark.master"] == "spark://spark.internal:7077"


# --- point-in-time retrieval from PostgreSQL, for real ------------------------------------------


@pytest.fixture(scope="module")
def retrieved(tmp_path_factory, redis_db):
    """The same raw rows in DuckDB and PostgreSQL, dbt on both, `feast apply` and
    get_historical_features(fraud_v1) through each feature_store file. Yields the dbt
    fraud_training_set (DuckDB) and the retrieved frame per offline store."""
    from skewless import importer, pipeline, settings, simulate
    from tests.engines import edge_cases  # the window edges and ties

    base = tmp_path_factory.mktemp("feast-offline")
    timings: dict[str, float] = {}
    with private_postgres(databases=("skewless",)) as port, pytest.MonkeyPatch.context() as mp:
        pg = settings_for(port)
        mp.setenv("SKEWLESS_VAR_DIR", str(base / "var"))
        for name in (*PLACEMENT_VARS, "FEAST_FS_YAML_FILE_PATH"):
            mp.delenv(name, raising=False)
        for key, value in pg.items():
            mp.setenv(key, value)
        cfg = settings.load()
        frame = simulate.generate(
            customers=300, days=30, seed=5, start=date(2025, 3, 1), tx_per_day=1.0, terminals=60
        )
        frame["is_fraud"] = frame["is_fraud"].astype("Int8")
        frame = pd.concat([frame, edge_cases(datetime(2025, 3, 5))], ignore_index=True)
        raw = simulate.write(frame, base / "raw" / "transactions.parquet")
        loaded = importer.import_transactions(raw)["rows_loaded"]
        assert copy_raw_transactions(cfg.warehouse_path, pg) == loaded
        for target in ("duckdb", "postgres"):  # dbt: Parquet exports on duckdb, tables on both
            mp.setenv("SKEWLESS_DBT_TARGET", target)
            started = time.perf_counter()
            pipeline.dbt(settings.load(), ["run"])
            timings[f"dbt run {target}"] = round(time.perf_counter() - started, 1)
        training, entity_df = fraud_training_set(cfg.warehouse_path)
        frames = {}
        for store in ("duckdb", "postgres"):
            use_store(mp, base, store)
            cfg = settings.load()
            started = time.perf_counter()
            pipeline.feast_apply(cfg, redis_db)
            frames[store] = retrieve_fraud_v1(cfg, redis_db, store, entity_df)
            timings[f"feast {store}"] = round(time.perf_counter() - started, 1)
    repeated = len(frames["postgres"]) - len(frames["postgres"].drop_duplicates())
    print(f"seconds: {timings}; raw rows: {loaded}; entity rows: {len(entity_df)}")
    print(f"rows repeated by Feast's PostgreSQL query (ties): {repeated}")
    yield {"training": training, **frames}


@pytest.mark.slow
def test_postgres_retrieval_equals_duckdb_retrieval(retrieved):
    duck, rows = retrieved["duckdb"], len(retrieved["training"])
    assert_same_retrieval(duck, retrieved["postgres"], rows, "postgres")


@pytest.mark.slow
def test_postgres_retrieval_reproduces_the_fraud_training_set(retrieved):
    training = retrieved["training"][list(fraud_features()) + ["transaction_id"]]
    bad = frame_differences(
        training, retrieved["postgres"][training.columns], "training vs postgres"
    )
    assert bad == [], f"{len(bad)} differences, first: {bad[:20]}"


def _data_sources():
    """feature_repo/data_sources.py, imported the way `feast apply` does (repo on sys.path)."""
    import importlib.util
    import sys

    sys.path.insert(0, str(REPO))
    try:
        spec = importlib.util.spec_from_file_location(
            "skewless_data_sources", REPO / "data_sources.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO))


def test_data_sources_follow_the_selected_offline_store(env):
    import click
    from feast import FileSource
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
        PostgreSQLSource,
    )
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    module = _data_sources()
    assert module.offline_store_type() == "duckdb"
    assert all(isinstance(s, FileSource) for s in module.SOURCES.values())
    # `feast -f feature_store.postgres.yaml apply`: the CLI's choice, from its click context
    with click.Context(
        click.Command("apply"), obj={"FS_YAML_FILE": REPO / "feature_store.postgres.yaml"}
    ):
        assert module.offline_store_type() == "postgres"
    env.setenv("FEAST_FS_YAML_FILE_PATH", str(REPO / "feature_store.postgres.yaml"))
    module = _data_sources()
    assert all(isinstance(s, PostgreSQLSource) for s in module.SOURCES.values())
    source = module.SOURCES["customer_daily_activity"]
    assert source.get_table_query_string().startswith('(select "customer_id", event_timestamp at')
    assert source.get_table_query_string().endswith('from "marts"."customer_daily_activity")')
    assert (
        module.PUSH_SOURCES["customer_transaction_windows"].batch_source
        is module.SOURCES["customer_transaction_windows"]
    )
    env.setenv("FEAST_FS_YAML_FILE_PATH", str(REPO / "feature_store.spark.yaml"))
    env.setenv("SKEWLESS_SPARK_SCHEMA", "features")
    module = _data_sources()
    assert all(isinstance(s, SparkSource) for s in module.SOURCES.values())
    assert module.SOURCES["customer_daily_activity"].table == "features.customer_daily_activity"
