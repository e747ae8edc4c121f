"""The committed model configuration (models/config.yaml) and the MLflow tracking/registry setup."""

from __future__ import annotations

from typing import Any

REQUIRED_KEYS = ("registered_model", "feature_service", "label", "alert_threshold", "top_k_per_day")


def load_config(cfg) -> dict[str, Any]:
    """The whole config file (``SKEWLESS_MODEL_CONFIG`` points elsewhere, e.g. in tests)."""
    import yaml

    with open(cfg.model_config) as handle:
        return yaml.safe_load(handle) or {}


def model_config(cfg, task: str) -> dict[str, Any]:
    """One task's section, checked for the keys training and scoring rely on."""
    config = load_config(cfg)
    if task not in config:
        raise ValueError(f"{cfg.model_config} has no section {task!r} (found: {sorted(config)})")
    section = config[task]
    missing = [k for k in REQUIRED_KEYS if k not in section]
    missing += [f"promotion.{k}" for k in ("metric",) if k not in section.get("promotion", {})]
    missing += [] if "lightgbm" in section else ["lightgbm"]
    if missing:
        raise ValueError(f"{cfg.model_config}: section {task!r} lacks {missing}")
    return section


def tracking_uri(cfg) -> str:
    """The configured tracking URI; for the default SQLite file its directory is created."""
    from pathlib import Path

    uri = cfg.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def registry(cfg):
    """(mlflow, MlflowClient) pointed explicitly at the configured tracking and registry URI, so
    nothing lands in ./mlruns."""
    import mlflow
    import mlflow.lightgbm  # noqa: F401  (the flavor used throughout)
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow, MlflowClient(tracking_uri=uri, registry_uri=uri)
