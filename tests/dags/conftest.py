"""Airflow for the DAG tests: a private AIRFLOW_HOME with a migrated SQLite metadata DB.

Airflow reads its configuration when first imported, so the environment is set here, at collection,
before any test module imports airflow; nothing outside tests/dags imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from skewless import orchestration, settings

_HOME = Path(tempfile.mkdtemp(prefix="skewless-airflow-"))
_VAR = _HOME / "var"
_saved = {k: os.environ.get(k) for k in ("SKEWLESS_VAR_DIR", "AIRFLOW_HOME")}
os.environ["SKEWLESS_VAR_DIR"] = str(_VAR)  # only while the env is computed
AIRFLOW_ENV = orchestration.airflow_env(settings.load()) | {"AIRFLOW_HOME": str(_HOME / "airflow")}
AIRFLOW_ENV["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow' / 'airflow.db'}"
AIRFLOW_ENV["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(_HOME / "airflow" / "logs")
AIRFLOW_ENV["AIRFLOW__COSMOS__CACHE_DIR"] = str(_HOME / "airflow" / "cosmos")
AIRFLOW_ENV.pop("SKEWLESS_VAR_DIR")
for key, value in _saved.items():
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value
os.environ.update(AIRFLOW_ENV)


@pytest.fixture(scope="session")
def airflow_db():
    """The migrated metadata DB (about 6 s) with the one-slot warehouse pool."""
    airflow = str(Path(sys.executable).parent / "airflow")
    for args in (
        ["db", "migrate"],
        ["pools", "set", orchestration.WAREHOUSE_POOL, "1", "warehouse writes"],
    ):
        proc = subprocess.run([airflow, *args], capture_output=True, text=True, env=os.environ)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(AIRFLOW_ENV["AIRFLOW_HOME"])
