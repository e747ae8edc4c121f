"""What the Airflow DAGs share, kept free of Airflow imports so the CLI and tests can use it.

- the Assets' URIs that chain the DAGs (raw → features → a model per task → predictions);
- which day a run works on: an explicit ``day`` param, else the day carried by the triggering
  asset events, else the run's data interval;
- the environment that runs Airflow on the embedded defaults (SQLite, LocalExecutor, var/).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path

from skewless import settings
from skewless.tasks import TASKS

RAW_URI = "skewless://warehouse/raw/transactions"
FEATURES_URI = "skewless://warehouse/features"
MODEL_URIS = {name: f"skewless://mlflow/models/{name}" for name in TASKS}
PREDICTIONS_URI = "skewless://warehouse/predictions"

WAREHOUSE_POOL = "warehouse"  # one slot: DuckDB has one writer

# Every DAG's default task arguments: the owner the UI shows, one retry a minute later.
DEFAULT_ARGS = {"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(minutes=1)}


def run_day(
    params: Mapping | None = None,
    triggering_asset_events: Mapping | None = None,
    data_interval_start: datetime | None = None,
) -> date:
    """The day a DAG run works on."""
    explicit = (params or {}).get("day")
    if explicit:
        try:
            return date.fromisoformat(str(explicit))
        except ValueError:
            raise ValueError(f"param day={explicit!r}: expected YYYY-MM-DD") from None
    carried = [
        event.extra["day"]
        for events in (triggering_asset_events or {}).values()
        for event in _events(events)
        if getattr(event, "extra", None) and event.extra.get("day")
    ]
    if carried:
        return max(date.fromisoformat(d) for d in carried)
    if data_interval_start is not None:
        return data_interval_start.date()
    raise ValueError("no day: pass the param day=YYYY-MM-DD or trigger through an asset event")


def _events(events) -> Iterable:
    return events if isinstance(events, Iterable) else [events]


def cutoff(day: date) -> datetime:
    """The batch cutoff after ``day``: its following midnight, UTC."""
    return datetime.combine(day + timedelta(days=1), time())


def airflow_env(cfg: settings.Settings | None = None) -> dict[str, str]:
    """Airflow on the embedded defaults; any AIRFLOW__* already set by the user wins. A PostgreSQL
    metadata DB also gets its async URL (below) unless the user set one."""
    cfg = cfg or settings.load()
    home = cfg.airflow_home
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos"),
        "AIRFLOW__COSMOS__ENABLE_CACHE": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": "8080",
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "False",
        "DO_NOT_TRACK": "1",
        "SKEWLESS_VAR_DIR": str(cfg.var_dir),
        "OMP_NUM_THREADS": "1",
    }
    env = {key: os.environ.get(key, value) for key, value in defaults.items()}
    # task workers report to the api-server's execution API: where it listens, not Airflow's
    # default of localhost:8080, so another AIRFLOW__API__PORT works too
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = os.environ.get(
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        f"{api_url(env)}/execution/",
    )
    async_conn = _async_conn(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    if async_conn and "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC" not in os.environ:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = async_conn
    return env


def api_url(env: dict[str, str]) -> str:
    """The api-server's URL for a client on this machine (``AIRFLOW__API__HOST`` / ``PORT``)."""
    host = env.get("AIRFLOW__API__HOST", "127.0.0.1")
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return f"http://{host}:{env.get('AIRFLOW__API__PORT', '8080')}"


def _async_conn(conn: str) -> str | None:
    """The async metadata URL for a PostgreSQL one: Airflow 3 derives `postgresql+asyncpg://`,
    a driver not installed here; psycopg 3 (requirements.txt) serves async connections too."""
    scheme, sep, rest = conn.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        return None
    return f"postgresql+psycopg://{rest}"


def manifest_path(cfg: settings.Settings | None = None) -> Path:
    """The dbt manifest Cosmos renders the build_features task group from (`skewless dbt parse`)."""
    cfg = cfg or settings.load()
    return cfg.var_dir / "dbt" / "target" / "manifest.json"


def prepare_airflow(cfg: settings.Settings | None = None) -> dict[str, str]:
    """Makes the embedded Airflow ready: dbt manifest for Cosmos, migrated metadata DB, the
    one-slot warehouse pool. Idempotent; returns the environment to run Airflow with."""
    import subprocess
    import sys

    from skewless import pipeline

    cfg = cfg or settings.load()
    env = {**os.environ, **airflow_env(cfg)}
    # `airflow standalone` starts its components as `airflow …` found on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    if not passwords.exists():
        # Local embedded setup only: the UI login is admin / admin until this file is edited.
        # A deployment configures its own auth manager (README, "Going to production").
        passwords.write_text('{"admin": "admin"}\n')
    if _manifest_stale(cfg):
        pipeline.dbt(cfg, ["parse"])
    airflow = str(Path(sys.executable).parent / "airflow")
    for args in (
        ["db", "migrate"],
        ["pools", "set", WAREHOUSE_POOL, "1", "DuckDB has one writer: warehouse writes queue here"],
    ):
        proc = subprocess.run([airflow, *args], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return env


def _manifest_stale(cfg: settings.Settings) -> bool:
    manifest = manifest_path(cfg)
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [p for p in cfg.dbt_project_dir.rglob("*") if p.suffix in (".sql", ".yml")]
    return any(p.stat().st_mtime > built for p in sources if "target" not in p.parts)
