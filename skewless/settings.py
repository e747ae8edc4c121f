"""Every path, endpoint and tunable of skewless, each overridable by an environment variable.

``TABLE`` (skewless/settings_table.py, re-exported here) is the single source: ``load()``,
``skewless config``, ``.env.example`` and docs/configuration.md's configuration table follow from
it (tests hold them equal). Nothing here imports a heavy library: the CLI imports this module on
every call. With no configuration everything lives under the project's git-ignored ``var/``.

A malformed value raises ``SettingError`` naming the variable and what it expects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# The table (skewless/settings_table.py): other code reads these as settings.<name>.
from skewless.settings_table import BY_ENV, PROJECT_ROOT, TABLE, Setting
from skewless.settings_table import SettingError as SettingError

MASK = "***"


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
    dbt_target: str = "duckdb"
    spark_dir: Path = Path("var/spark")
    redis_cluster: bool = False
    max_quarantine_share: float = 0.05
    dependency_attempts: int = 10
    dependency_delay: float = 2.0
    drop_map: tuple[str, ...] | None = None  # canonical=source items for the drop files

    @property
    def dbt_profiles_dir(self) -> Path:
        return self.dbt_project_dir


def _raw(setting: Setting, env: Mapping[str, str], var_dir: Path) -> tuple[str | None, str]:
    """(text, source): the variable's text when set and not empty, else its default."""
    text = env.get(setting.env)
    if text:
        return text, "environment"
    return setting.default_text(var_dir), "default"


def _var_dir(env: Mapping[str, str]) -> Path:
    setting = BY_ENV["SKEWLESS_VAR_DIR"]
    text, _ = _raw(setting, env, PROJECT_ROOT / "var")
    return setting.parse_text(text)


def get(name: str, env: Mapping[str, str] | None = None) -> Any:
    """The parsed effective value of one variable of the table (None when unset, no default)."""
    env = os.environ if env is None else env
    setting = BY_ENV[name]
    text, _ = _raw(setting, env, _var_dir(env))
    return None if text is None else setting.parse_text(text)


COMPONENTS = ("sidecar", "gunicorn", "stream")


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def section_keys(component: str) -> dict[str, Setting]:
    """The component's rows of the table by key (the variable's name without ``SKEWLESS_``)."""
    if component not in COMPONENTS:
        raise ValueError(f"component={component!r}: expected one of {list(COMPONENTS)}")
    return {s.env.removeprefix("SKEWLESS_"): s for s in TABLE if s.component == component}


def section(
    component: str, env: Mapping[str, str] | None = None, overrides: Mapping | None = None
) -> dict[str, Any]:
    """One component's settings, parsed and checked by the table: {key: value}, the key being the
    variable's name without ``SKEWLESS_`` (``SERVING_MODE``). ``overrides`` (same keys; None
    unsets) win over the environment and go through the same checks, so a bad value is refused
    the same way wherever it comes from."""
    keys = section_keys(component)
    env = os.environ if env is None else env
    var_dir = _var_dir(env)
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for key, setting in keys.items():
        text = _as_text(overrides[key]) if key in overrides else _raw(setting, env, var_dir)[0]
        values[key] = None if text is None else setting.parse_text(text)
    return values


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Reads the environment now (tests change it between calls)."""
    env = os.environ if env is None else env
    var_dir = _var_dir(env)
    values: dict[str, Any] = {}
    for setting in TABLE:
        if setting.field is None:
            continue
        text, _ = _raw(setting, env, var_dir)
        values[setting.field] = None if text is None else setting.parse_text(text)
    return Settings(
        **values,
        redis_dir=var_dir / "redis",
        feast_repo=PROJECT_ROOT / "feature_repo",
    )


@dataclass(frozen=True)
class Effective:
    setting: Setting
    text: str | None  # unmasked
    source: str  # environment | default

    @property
    def shown(self) -> str | None:
        return mask(self.text) if self.setting.secret else self.text


def effective(env: Mapping[str, str] | None = None) -> list[Effective]:
    """Every variable of the table with its effective text, each one validated."""
    env = os.environ if env is None else env
    var_dir = _var_dir(env)
    rows = []
    for setting in TABLE:
        text, source = _raw(setting, env, var_dir)
        if text is not None:
            setting.parse_text(text)
        rows.append(Effective(setting, text, source))
    return rows


def mask(value: str | None) -> str | None:
    """A URL keeps everything but its password; any other secret is replaced whole."""
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme and "://" in value:
        if parts.password is None:
            return value
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
    return MASK


def markdown_table() -> str:
    """The configuration table of docs/configuration.md."""
    lines = ["| variable | default | read by | what |", "|---|---|---|---|"]
    for s in TABLE:
        default = s.display_default()
        default = default if s.default is None else f"`{default}`"
        secret = " (secret: masked by `skewless config`)" if s.secret else ""
        lines.append(f"| `{s.env}` | {default} | {s.component} | {s.description}{secret} |")
    return "\n".join(lines)
