"""Every path and endpoint of skewless, each overridable by an environment variable.

Nothing here imports a heavy library: the CLI imports this module on every call.
With no configuration everything lives under the project's git-ignored ``var/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingError(ValueError):
    """A setting is malformed: the message names the variable and what it expects."""


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingError(f"{name}={value!r}: expected a number, e.g. {name}={default}") from None


@dataclass(frozen=True)
class Settings:
    var_dir: Path
    warehouse_path: Path
    feature_export_dir: Path
    redis_url: str | None  # None: use the private Redis under var/redis
    redis_dir: Path
    feast_repo: Path
    feast_registry: Path
    dbt_project_dir: Path
    label_delay: timedelta
    mlflow_tracking_uri: str
    mlflow_artifact_root: Path
    airflow_home: Path
    drop_dir: Path  # files landed here are ingested by the `ingest` DAG
    model_config: Path

    @property
    def dbt_profiles_dir(self) -> Path:
        return self.dbt_project_dir


def load() -> Settings:
    """Reads the environment now (tests change it between calls)."""
    var_dir = _env_path("SKEWLESS_VAR_DIR", PROJECT_ROOT / "var")
    label_delay_days = _env_float("SKEWLESS_LABEL_DELAY_DAYS", 7.0)
    if label_delay_days < 0:
        raise SettingError(
            f"SKEWLESS_LABEL_DELAY_DAYS={label_delay_days}: expected a number of days >= 0"
        )
    return Settings(
        var_dir=var_dir,
        warehouse_path=_env_path("SKEWLESS_WAREHOUSE", var_dir / "warehouse.duckdb"),
        feature_export_dir=_env_path("SKEWLESS_FEATURE_DIR", var_dir / "features"),
        redis_url=os.environ.get("REDIS_URL") or None,
        redis_dir=var_dir / "redis",
        feast_repo=PROJECT_ROOT / "feature_repo",
        feast_registry=_env_path("SKEWLESS_FEAST_REGISTRY", var_dir / "feast" / "registry.db"),
        dbt_project_dir=PROJECT_ROOT / "dbt_project",
        label_delay=timedelta(days=label_delay_days),
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{var_dir / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_root=_env_path(
            "SKEWLESS_MLFLOW_ARTIFACTS", var_dir / "mlflow" / "artifacts"
        ),
        airflow_home=_env_path("AIRFLOW_HOME", var_dir / "airflow"),
        drop_dir=_env_path("SKEWLESS_DROP_DIR", var_dir / "drop"),
        model_config=_env_path("SKEWLESS_MODEL_CONFIG", PROJECT_ROOT / "models" / "config.yaml"),
    )
