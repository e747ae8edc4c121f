"""Every path, endpoint and tunable of skewless, each overridable by an environment variable.

``TABLE`` is the single source: ``load()``, ``skewless config``, ``.env.example`` and docs/configuration.md's
configuration table follow from it (tests hold them equal). Nothing here imports a heavy library:
the CLI imports this module on every call. With no configuration everything lives under the
project's git-ignored ``var/``.

A malformed value raises ``SettingError`` naming the variable and what it expects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from skewless import modes

PROJECT_ROOT = Path(__file__).resolve().parent.parent

MASK = "***"


class SettingError(ValueError):
    """A setting is malformed: the message names the variable and what it expects."""


# Parsers: text -> value, raising ValueError with what the variable expects (without its name).


def _path(text: str) -> Path:
    return Path(text).expanduser().resolve()


def _number(low: float | None = None, high: float | None = None, what: str = "a number"):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if (
            value != value
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise ValueError(what)
        return value

    return parse


def _integer(low: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(what) from None
        if value < low:
            raise ValueError(what)
        return value

    return parse


def _boolean(text: str) -> bool:
    # The sidecar parses SKEWLESS_* values as JSON: "False" would stay a (truthy) string there.
    lowered = text.strip()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError("true or false")


def _text(text: str) -> str:
    return text


def _choice(*options: str):
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError("one of " + ", ".join(options))
        return text

    return parse


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("a port number, e.g. 5432")
    return int(text)


def _redis_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("a URL redis://[:password@]host:port/db or rediss://… (TLS)")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
        db = parts.path.lstrip("/") or "0"
        int(db)
    except ValueError:
        raise ValueError(
            "a URL redis://[:password@]host:port/db with a numeric port and db"
        ) from None
    return text


# MLflow's tracking stores; a SQLAlchemy scheme may name its driver (postgresql+psycopg2).
_TRACKING_SCHEMES = (
    "http",
    "https",
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "databricks",
)


def _uri(text: str) -> str:
    parts = urlsplit(text)
    family = parts.scheme.split("+")[0]
    if family not in _TRACKING_SCHEMES or (family.startswith("http") and not parts.hostname):
        raise ValueError(
            "a URI such as http://mlflow:5000, sqlite:////path/mlflow.db or "
            "postgresql://user:password@host:5432/mlflow"
        )
    return text


def _bind(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("host:port, e.g. 0.0.0.0:8000")
    return text


def _days(text: str) -> timedelta:
    return timedelta(days=_number(0, what="a number of days >= 0, e.g. 7")(text))


@dataclass(frozen=True)
class Setting:
    """One row of the configuration table."""

    env: str  # the environment variable
    default: str | None  # text form; {var} = SKEWLESS_VAR_DIR, {project} = the project root
    description: str
    parse: Callable[[str], Any]
    field: str | None = None  # attribute of Settings; None: read by another component (sidecar …)
    secret: bool = False  # masked by `skewless config` (passwords inside URLs, tokens)
    component: str = "core"  # who reads it: core (settings.load), dbt, sidecar, gunicorn, stream
    unset: str = ""  # what happens when it is unset and has no default
    deploy: bool = False  # its default only suits one machine: a deployment (compose) sets it

    def default_text(self, var_dir: Path | None = None) -> str | None:
        if self.default is None:
            return None
        var = str(var_dir) if var_dir is not None else str(PROJECT_ROOT / "var")
        return self.default.format(var=var, project=PROJECT_ROOT)

    def display_default(self) -> str:
        """The default as docs/configuration.md shows it."""
        if self.default is None:
            return self.unset or "unset"
        return self.default.format(var="$SKEWLESS_VAR_DIR", project=".").removeprefix("./")

    def parse_text(self, text: str) -> Any:
        try:
            return self.parse(text)
        except ValueError as exc:
            raise SettingError(f"{self.env}={text!r}: expected {exc}") from None


_SECONDS = "a number of seconds >= 0"

TABLE: tuple[Setting, ...] = (
    Setting("SKEWLESS_VAR_DIR", "{project}/var", "all local state", _path, "var_dir"),
    Setting(
        "SKEWLESS_WAREHOUSE",
        "{var}/warehouse.duckdb",
        "the DuckDB warehouse (one writer at a time)",
        _path,
        "warehouse_path",
    ),
    Setting(
        "SKEWLESS_FEATURE_DIR",
        "{var}/features",
        "Parquet exports Feast reads",
        _path,
        "feature_export_dir",
    ),
    Setting(
        "SKEWLESS_FEAST_REGISTRY",
        "{var}/feast/registry.db",
        "Feast registry",
        _path,
        "feast_registry",
    ),
    Setting(
        "SKEWLESS_DROP_DIR",
        "{var}/drop",
        "where `ingest` finds each day's file",
        _path,
        "drop_dir",
    ),
    Setting(
        "SKEWLESS_LABEL_DELAY_DAYS",
        "7",
        "default label delay",
        _days,
        "label_delay",
    ),
    Setting(
        "SKEWLESS_MAX_QUARANTINE_SHARE",
        "0.05",
        "the raw gate fails a day with more quarantined rows than this",
        _number(0, 1, "a share between 0 and 1, e.g. 0.05"),
        "max_quarantine_share",
    ),
    Setting(
        "SKEWLESS_DBT_PROJECT",
        "{project}/dbt_project",
        "the dbt project (`skewless dbtgen` writes its generated models there)",
        _path,
        "dbt_project_dir",
    ),
    Setting(
        "SKEWLESS_DECLARATION",
        None,
        "a Python file that extends the declaration (entities, feature groups, services, tasks)",
        _path,
        unset="the declaration of `skewless/features.py` alone",
    ),
    Setting(
        "SKEWLESS_MODEL_CONFIG",
        "{project}/models/config.yaml",
        "thresholds, promotion rule, LightGBM parameters",
        _path,
        "model_config",
    ),
    Setting(
        "REDIS_URL",
        None,
        "the online store, the stream and the serving log",
        _redis_url,
        "redis_url",
        secret=True,
        unset="private server under `$SKEWLESS_VAR_DIR/redis`",
        deploy=True,
    ),
    Setting(
        "SKEWLESS_REDIS_CLUSTER",
        "false",
        "the Redis URLs name a node of a Redis Cluster (the private Redis is then a 3-node "
        "cluster); database 0 only",
        _boolean,
        "redis_cluster",
    ),
    Setting(
        "MLFLOW_TRACKING_URI",
        "sqlite:///{var}/mlflow/mlflow.db",
        "MLflow tracking and registry",
        _uri,
        "mlflow_tracking_uri",
        secret=True,
        deploy=True,
    ),
    Setting(
        "SKEWLESS_MLFLOW_ARTIFACTS",
        "{var}/mlflow/artifacts",
        "run artifacts (a path every process that logs or loads models can read)",
        _path,
        "mlflow_artifact_root",
    ),
    Setting(
        "AIRFLOW_HOME",
        "{var}/airflow",
        "Airflow state (`AIRFLOW__*` variables override any default)",
        _path,
        "airflow_home",
    ),
    Setting(
        "SKEWLESS_DEPENDENCY_ATTEMPTS",
        "10",
        "tries of Redis / MLflow before a service refuses to start",
        _integer(1, "a whole number >= 1, e.g. 10"),
        "dependency_attempts",
    ),
    Setting(
        "SKEWLESS_DEPENDENCY_DELAY_SECONDS",
        "2",
        "pause between those tries",
        _number(0, what=_SECONDS),
        "dependency_delay",
    ),
    # Read by dbt's profile (dbt_project/profiles.yml); the PG ones only with the postgres target.
    Setting(
        "SKEWLESS_DBT_TARGET",
        "duckdb",
        "the dbt engine: duckdb (the embedded warehouse) or postgres",
        _choice("duckdb", "postgres"),
        "dbt_target",
    ),
    *(
        Setting(
            f"SKEWLESS_PG_{key}",
            None,
            description,
            parse,
            secret=key == "PASSWORD",
            component="dbt",
            unset="needed only with SKEWLESS_DBT_TARGET=postgres",
        )
        for key, description, parse in (
            ("HOST", "PostgreSQL host of the dbt postgres target", _text),
            ("PORT", "its port", _port),
            ("USER", "its user", _text),
            ("PASSWORD", "its password", _text),
            ("DBNAME", "its database", _text),
            ("SCHEMA", "the schema of the dbt tables there", _text),
        )
    ),
    # The sidecar's section (serving/app.py: settings.section("sidecar"); its config mapping wins).
    Setting(
        "SKEWLESS_SERVING_MODE",
        modes.DEFAULT,
        "default feature mode; a request may choose another",
        _choice(*modes.NAMES),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_API_TOKEN",
        None,
        "when set, the API needs `Authorization: Bearer <token>`",
        _text,
        component="sidecar",
        secret=True,
        unset="unset: no token",
    ),
    Setting(
        "SKEWLESS_REDIS_URL",
        None,
        "the sidecar's Redis",
        _redis_url,
        component="sidecar",
        secret=True,
        unset="`REDIS_URL`, else the private server",
    ),
    Setting(
        "SKEWLESS_REDIS_CONNECT_TIMEOUT",
        "0.05",
        "seconds to connect: a Redis that is down is a fast 503",
        _number(0, what=_SECONDS),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_REDIS_TIMEOUT",
        "0.25",
        "seconds per reply: a hung Redis is a 503 after this",
        _number(0, what=_SECONDS),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_MAX_CONTENT_LENGTH",
        "16384",
        "bigger request bodies get 413",
        _integer(1, "a number of bytes >= 1"),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_MODEL_CHECK_SECONDS",
        "30",
        "how often the `champion` alias is checked (0: never)",
        _number(0, what=_SECONDS),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_LOAD_MODEL",
        "true",
        "load the champion at startup",
        _boolean,
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_RECORD_EVENTS",
        "true",
        "every scored transaction enters the exact-mode state",
        _boolean,
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_SERVING_LOG_MAXLEN",
        "1000000",
        "`XADD MAXLEN ~` of the serving log",
        _integer(1, "a whole number >= 1"),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_EVENT_STREAM_MAXLEN",
        "1000000",
        "`XADD MAXLEN ~` of the event stream `skewless:{stream}:events` (streaming mode)",
        _integer(1, "a whole number >= 1"),
        component="sidecar",
    ),
    # The gunicorn section (serving/gunicorn_conf.py; command-line flags of `skewless serve` win).
    Setting(
        "SKEWLESS_BIND",
        "127.0.0.1:8000",
        "the sidecar's address",
        _bind,
        component="gunicorn",
    ),
    Setting(
        "SKEWLESS_WORKERS",
        "2",
        "gunicorn worker processes",
        _integer(1, "a whole number >= 1"),
        component="gunicorn",
    ),
    Setting(
        "SKEWLESS_THREADS",
        "1",
        "threads per gunicorn worker (more only pay off when Redis is remote)",
        _integer(1, "a whole number >= 1"),
        component="gunicorn",
    ),
    # The stream section (the stream consumer; `skewless stream-consumer` flags win).
    Setting(
        "SKEWLESS_STREAM_LAG_SECONDS",
        "10",
        "processing lag of the stream consumer",
        _number(0, what=_SECONDS),
        component="stream",
    ),
    Setting(
        "SKEWLESS_STREAM_ALLOWED_LATENESS_SECONDS",
        "3600",
        "events later than this behind the watermark are dropped",
        _number(0, what=_SECONDS),
        component="stream",
    ),
)

BY_ENV: dict[str, Setting] = {s.env: s for s in TABLE}


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
    redis_cluster: bool = False
    max_quarantine_share: float = 0.05
    dependency_attempts: int = 10
    dependency_delay: float = 2.0

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


def section(
    component: str, env: Mapping[str, str] | None = None, overrides: Mapping | None = None
) -> dict[str, Any]:
    """One component's settings, parsed and checked by the table: {key: value}, the key being the
    variable's name without ``SKEWLESS_`` (``SERVING_MODE``). ``overrides`` (same keys; None
    unsets) win over the environment and go through the same checks, so a bad value is refused
    the same way wherever it comes from."""
    if component not in COMPONENTS:
        raise ValueError(f"component={component!r}: expected one of {list(COMPONENTS)}")
    env = os.environ if env is None else env
    var_dir = _var_dir(env)
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for setting in TABLE:
        if setting.component != component:
            continue
        key = setting.env.removeprefix("SKEWLESS_")
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
