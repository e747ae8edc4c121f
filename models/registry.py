"""MLflow tracking and model registry: experiments per task, the ``champion`` alias, promotion.

Every entry point sets the tracking and registry URI explicitly from settings (SQLite under var/
by default, ``MLFLOW_TRACKING_URI`` otherwise) and creates experiments with their artifacts under
``mlflow_artifact_root``, so nothing is written to ./mlruns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAMPION = "champion"
# The model version tag holding the alert threshold derived at training time (models/config.yaml).
THRESHOLD_TAG = "alert_threshold"


def tracking_uri(cfg) -> str:
    """The configured tracking URI; for a SQLite file its directory is created."""
    uri = cfg.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def connect(cfg):
    """(mlflow, MlflowClient), both pointed at the configured tracking and registry URI."""
    import mlflow
    import mlflow.lightgbm  # noqa: F401  (the flavor used throughout)
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow, MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment(mlflow, cfg, name: str) -> str:
    """The experiment of a task, created with its artifacts under the configured artifact root."""
    from mlflow.exceptions import MlflowException

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = cfg.mlflow_artifact_root / name
    location.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow.create_experiment(name, artifact_location=location.as_uri())
    except MlflowException:  # created concurrently
        return mlflow.get_experiment_by_name(name).experiment_id


def pip_requirements() -> list[str]:
    """The model's requirements, listed: MLflow's inference reloads the model in a subprocess
    (~20 s per log_model here)."""
    from importlib.metadata import version

    names = ("mlflow", "lightgbm", "numpy", "pandas", "scipy")
    return [f"{name}=={version(name)}" for name in names]


def champion_version(client, model_name: str) -> str | None:
    """The version holding the alias ``champion``, or None (no model or no alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


def load_version(mlflow, model_name: str, version: str):
    """The LightGBM Booster of one registered version."""
    return mlflow.lightgbm.load_model(f"models:/{model_name}/{version}")


def decide(challenger: float, champion: float | None, min_improvement: float) -> tuple[bool, str]:
    """Whether the challenger's holdout score beats the champion's on the same holdout."""
    if champion is None:
        return True, "first registered model"
    beats = challenger > champion + min_improvement
    verdict = "beats" if beats else "does not beat"
    return (
        beats,
        f"challenger {challenger:.6f} {verdict} champion {champion:.6f} + {min_improvement}",
    )


def promote(client, model_name: str, version: str) -> None:
    client.set_registered_model_alias(model_name, CHAMPION, version)


def describe(decision: dict[str, Any]) -> dict[str, str]:
    """The decision as run tags (promotion.*)."""
    return {f"promotion.{key}": str(value) for key, value in decision.items()}


def alert_threshold(client, model_name: str, version: str, task_config: dict) -> float:
    """The alert threshold of a model version: the one derived when it was trained (its tag), or
    the committed fixed threshold for a version trained before thresholds were derived."""
    from models.config import fixed_threshold

    tags = client.get_model_version(model_name, version).tags
    if THRESHOLD_TAG in tags:
        return float(tags[THRESHOLD_TAG])
    fixed = fixed_threshold(task_config)
    if fixed is not None:
        return fixed
    raise ValueError(
        f"model {model_name!r} version {version} has no {THRESHOLD_TAG!r} tag and"
        f" models/config.yaml derives the threshold by a rule: retrain it"
    )


class NoChampion(RuntimeError):
    """No model version holds the alias ``champion`` yet: train one first."""


def load_champion(cfg, task: str):
    """(Booster, registered model name, version, alert threshold) of the task's champion.

    The alias is resolved once and that version loaded (``models:/<name>/<version>`` is what
    ``models:/<name>@champion`` points to), so the version written beside each score is the one
    that produced it even if the alias moves meanwhile. The threshold is the one that version was
    trained with (``alert_threshold``; ValueError if it has none and the config derives
    it by a rule).
    """
    from models.config import model_config

    config = model_config(cfg, task)
    name = config["registered_model"]
    mlflow, client = connect(cfg)
    version = champion_version(client, name)
    if version is None:
        raise NoChampion(
            f"no version of model {name!r} has the alias 'champion': run `skewless train {task}`"
        )
    threshold = alert_threshold(client, name, version, config)
    return load_version(mlflow, name, version), name, version, threshold
