"""Feast's offline store is chosen by configuration, not code.

feature_repo/feature_store.yaml is the embedded environment (duckdb over dbt's Parquet exports);
feature_repo/feature_store.postgres.yaml puts the offline store on PostgreSQL. Feast's own
FEAST_FS_YAML_FILE_PATH picks the file for the CLI and for FeatureStore(repo_path=...) alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from skewless.settings import PROJECT_ROOT

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

    assert without_offline_store(REPO / "feature_store.yaml") == without_offline_store(
        REPO / "feature_store.postgres.yaml"
    )
