"""The committed model configuration, models/config.yaml (``SKEWLESS_MODEL_CONFIG`` overrides the
path, e.g. in tests)."""

from __future__ import annotations

from typing import Any

REQUIRED_KEYS = ("registered_model", "feature_service", "label", "alert_threshold", "top_k_per_day")


def load_config(cfg) -> dict[str, Any]:
    import yaml

    with open(cfg.model_config) as handle:
        return yaml.safe_load(handle) or {}


def model_config(cfg, task: str) -> dict[str, Any]:
    """One task's section, checked for the keys training and scoring rely on."""
    config = load_config(cfg)
    section = config.get(task) or _query_task_section(config, task)
    if section is None:
        raise ValueError(f"{cfg.model_config} has no section {task!r} (found: {sorted(config)})")
    missing = [k for k in REQUIRED_KEYS if k not in section]
    if "metric" not in section.get("promotion", {}):
        missing.append("promotion.metric")
    if "num_boost_round" not in section.get("lightgbm", {}):
        missing.append("lightgbm.num_boost_round")
    if missing:
        raise ValueError(f"{cfg.model_config}: section {task!r} lacks {missing}")
    return section


def _query_task_section(config: dict, task: str) -> dict[str, Any] | None:
    """A task declared by a predictive query takes the section of the declared task it is based
    on, with its own registered model and label."""
    from skewless.tasks import get_task

    try:
        spec = get_task(task)
    except ValueError:
        return None
    if spec.based_on is None or spec.based_on not in config:
        return None
    return {**config[spec.based_on], "registered_model": spec.name, "label": spec.label}


def fixed_threshold(task_config: dict[str, Any]) -> float | None:
    """The task's alert threshold when models/config.yaml fixes it (a number), None when a rule
    derives it at training time (``{rule: daily_capacity, ...}``, see models/evaluation.py)."""
    setting = task_config["alert_threshold"]
    if isinstance(setting, int | float) and not isinstance(setting, bool):
        return float(setting)
    return None
