"""Fixtures for the model jobs: a private, writable copy of the shared built pipeline per test.

Each test gets its own var/ (warehouse, exports, Feast registry) copied from ``built_pipeline`` and
its own MLflow SQLite database. The database starts as a copy of an empty one migrated once per
session: MLflow's schema migrations take ~5-10 s per fresh file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from skewless import redis_server, settings
from tests.helpers import PLACEMENT_VARS

COMMITTED_CONFIG = settings.PROJECT_ROOT / "models" / "config.yaml"


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow tracking database with the current schema and no runs."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def pipeline_copy(built_pipeline, empty_mlflow_db, tmp_path, monkeypatch) -> Iterator[Path]:
    """A writable copy of the built pipeline's var/; SKEWLESS_VAR_DIR points at it. A private
    Redis that a command started under it (no REDIS_URL here) is stopped afterwards."""
    var_dir = tmp_path / "var"
    shutil.copytree(built_pipeline.var_dir, var_dir)
    (var_dir / "mlflow").mkdir(exist_ok=True)
    shutil.copy(empty_mlflow_db, var_dir / "mlflow" / "mlflow.db")
    monkeypatch.setenv("SKEWLESS_VAR_DIR", str(var_dir))
    for name in PLACEMENT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SKEWLESS_MODEL_CONFIG", raising=False)
    yield var_dir
    redis_server.stop(settings.load().redis_dir)


@pytest.fixture
def model_config_override(tmp_path, monkeypatch):
    """Writes models/config.yaml with some values replaced and points SKEWLESS_MODEL_CONFIG at it.

    Usage: ``model_config_override({"fraud": {"lightgbm": {"num_boost_round": 1}}})``.
    """

    def override(changes: dict) -> Path:
        config = yaml.safe_load(COMMITTED_CONFIG.read_text())
        _merge(config, changes)
        path = tmp_path / f"model-config-{len(list(tmp_path.glob('model-config-*')))}.yaml"
        path.write_text(yaml.safe_dump(config))
        monkeypatch.setenv("SKEWLESS_MODEL_CONFIG", str(path))
        return path

    return override


def _merge(base: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
