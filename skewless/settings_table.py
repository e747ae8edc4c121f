"""The settings table: the ``Setting`` row type and ``TABLE``, one row per environment variable.

``TABLE`` is the single source of configuration; skewless.settings (which re-exports everything
here) loads, checks and documents it. Nothing here imports a heavy library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skewless import modes
from skewless import settings_parsers as parsers

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingError(ValueError):
    """A setting is malformed: the message names the variable and what it expects."""


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
    Setting("SKEWLESS_VAR_DIR", "{project}/var", "all local state", parsers.path, "var_dir"),
    Setting(
        "SKEWLESS_WAREHOUSE",
        "{var}/warehouse.duckdb",
        "the DuckDB warehouse (one writer at a time)",
        parsers.path,
        "warehouse_path",
    ),
    Setting(
        "SKEWLESS_FEATURE_DIR",
        "{var}/features",
        "Parquet exports Feast reads",
        parsers.path,
        "feature_export_dir",
    ),
    Setting(
        "SKEWLESS_FEAST_REGISTRY",
        "{var}/feast/registry.db",
        "Feast registry",
        parsers.path,
        "feast_registry",
    ),
    Setting(
        "SKEWLESS_DROP_DIR",
        "{var}/drop",
        "where `ingest` finds each day's file",
        parsers.path,
        "drop_dir",
    ),
    Setting(
        "SKEWLESS_DROP_MAP",
        None,
        "the drop files' column names, as `skewless import --map`: "
        "`transaction_id=TX_ID,amount=TX_AMOUNT,...`",
        parsers.pairs,
        "drop_map",
        unset="the canonical column names",
    ),
    Setting(
        "SKEWLESS_LABEL_DELAY_DAYS",
        "7",
        "default label delay",
        parsers.days,
        "label_delay",
    ),
    Setting(
        "SKEWLESS_MAX_QUARANTINE_SHARE",
        "0.05",
        "the raw gate fails a day with more quarantined rows than this",
        parsers.number(0, 1, "a share between 0 and 1, e.g. 0.05"),
        "max_quarantine_share",
    ),
    Setting(
        "SKEWLESS_DBT_PROJECT",
        "{project}/dbt_project",
        "the dbt project (`skewless dbtgen` writes its generated models there)",
        parsers.path,
        "dbt_project_dir",
    ),
    Setting(
        "SKEWLESS_DECLARATION",
        None,
        "a Python file that extends the declaration (entities, feature groups, services, tasks)",
        parsers.path,
        unset="the declaration of `skewless/features.py` alone",
    ),
    Setting(
        "SKEWLESS_MODEL_CONFIG",
        "{project}/models/config.yaml",
        "thresholds, promotion rule, LightGBM parameters",
        parsers.path,
        "model_config",
    ),
    Setting(
        "REDIS_URL",
        None,
        "the online store, the stream and the serving log",
        parsers.redis_url,
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
        parsers.boolean,
        "redis_cluster",
    ),
    Setting(
        "MLFLOW_TRACKING_URI",
        "sqlite:///{var}/mlflow/mlflow.db",
        "MLflow tracking and registry",
        parsers.uri,
        "mlflow_tracking_uri",
        secret=True,
        deploy=True,
    ),
    Setting(
        "SKEWLESS_MLFLOW_ARTIFACTS",
        "{var}/mlflow/artifacts",
        "run artifacts (a path every process that logs or loads models can read)",
        parsers.path,
        "mlflow_artifact_root",
    ),
    Setting(
        "AIRFLOW_HOME",
        "{var}/airflow",
        "Airflow state (`AIRFLOW__*` variables override any default)",
        parsers.path,
        "airflow_home",
    ),
    Setting(
        "SKEWLESS_DEPENDENCY_ATTEMPTS",
        "10",
        "tries of Redis / MLflow before a service refuses to start",
        parsers.integer(1, "a whole number >= 1, e.g. 10"),
        "dependency_attempts",
    ),
    Setting(
        "SKEWLESS_DEPENDENCY_DELAY_SECONDS",
        "2",
        "pause between those tries",
        parsers.number(0, what=_SECONDS),
        "dependency_delay",
    ),
    # Read by dbt's profile (dbt_project/profiles.yml); the PG ones only with the postgres target.
    Setting(
        "SKEWLESS_DBT_TARGET",
        "duckdb",
        "the dbt engine: duckdb (the embedded warehouse), postgres or spark",
        parsers.choice("duckdb", "postgres", "spark"),
        "dbt_target",
    ),
    Setting(
        "SKEWLESS_DBT_THREADS",
        "1",
        "models dbt builds at once on the DuckDB warehouse (DuckDB runs each on every core; two"
        " large window models at once need about 1.5x the memory)",
        parsers.integer(1, "a whole number >= 1"),
        component="dbt",
    ),
    Setting(
        "SKEWLESS_SPARK_DIR",
        "{var}/spark",
        "the spark target's tables (warehouse/) and Hive metastore (metastore_db/)",
        parsers.path,
        "spark_dir",
    ),
    Setting(
        "SKEWLESS_SPARK_MASTER",
        "local[2]",
        "the spark target's master: local[N] in process, or a cluster's URL",
        parsers.text,
        component="dbt",
    ),
    Setting(
        "SKEWLESS_SPARK_SCHEMA",
        "skewless",
        "the Spark database of the dbt tables",
        parsers.text,
        component="dbt",
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
            ("HOST", "PostgreSQL host of the dbt postgres target", parsers.text),
            ("PORT", "its port", parsers.port),
            ("USER", "its user", parsers.text),
            ("PASSWORD", "its password", parsers.text),
            ("DBNAME", "its database", parsers.text),
            ("SCHEMA", "the schema of the dbt tables there", parsers.text),
        )
    ),
    # The sidecar's section (serving/app.py: settings.section("sidecar"); its config mapping wins).
    Setting(
        "SKEWLESS_SERVING_MODE",
        modes.DEFAULT,
        "default feature mode; a request may choose another",
        parsers.choice(*modes.NAMES),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_API_TOKEN",
        None,
        "when set, the API needs `Authorization: Bearer <token>`",
        parsers.text,
        component="sidecar",
        secret=True,
        unset="unset: no token",
    ),
    Setting(
        "SKEWLESS_REDIS_URL",
        None,
        "the sidecar's Redis",
        parsers.redis_url,
        component="sidecar",
        secret=True,
        unset="`REDIS_URL`, else the private server",
    ),
    Setting(
        "SKEWLESS_REDIS_CONNECT_TIMEOUT",
        "0.05",
        "seconds to connect: a Redis that is down is a fast 503",
        parsers.number(0, what=_SECONDS),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_REDIS_TIMEOUT",
        "0.25",
        "seconds per reply: a hung Redis is a 503 after this",
        parsers.number(0, what=_SECONDS),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_EXACT_LATENESS_SECONDS",
        "21600",
        "exact-mode state keeps this much raw history besides its tiles: a request or event up to"
        " this long behind an entity's newest one is still exact; longer costs Redis memory",
        parsers.number(60, what="a number of seconds >= 60"),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_MAX_CONTENT_LENGTH",
        "16384",
        "bigger request bodies get 413",
        parsers.integer(1, "a number of bytes >= 1"),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_MODEL_CHECK_SECONDS",
        "30",
        "how often the `champion` alias is checked (0: never)",
        parsers.number(0, what=_SECONDS),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_LOAD_MODEL",
        "true",
        "load the champion at startup",
        parsers.boolean,
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_RECORD_EVENTS",
        "true",
        "every scored transaction enters the exact-mode state",
        parsers.boolean,
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_SERVING_LOG_MAXLEN",
        "1000000",
        "`XADD MAXLEN ~` of the serving log",
        parsers.integer(1, "a whole number >= 1"),
        component="sidecar",
    ),
    Setting(
        "SKEWLESS_EVENT_STREAM_MAXLEN",
        "1000000",
        "`XADD MAXLEN ~` of the event stream `skewless:{stream}:events` (streaming mode)",
        parsers.integer(1, "a whole number >= 1"),
        component="sidecar",
    ),
    # The gunicorn section (serving/gunicorn_conf.py; command-line flags of `skewless serve` win).
    Setting(
        "SKEWLESS_BIND",
        "127.0.0.1:8000",
        "the sidecar's address",
        parsers.bind,
        component="gunicorn",
    ),
    Setting(
        "SKEWLESS_WORKERS",
        "2",
        "gunicorn worker processes",
        parsers.integer(1, "a whole number >= 1"),
        component="gunicorn",
    ),
    Setting(
        "SKEWLESS_THREADS",
        "1",
        "threads per gunicorn worker (more only pay off when Redis is remote)",
        parsers.integer(1, "a whole number >= 1"),
        component="gunicorn",
    ),
    # The stream section (the stream consumer; `skewless stream-consumer` flags win).
    Setting(
        "SKEWLESS_STREAM_LAG_SECONDS",
        "10",
        "processing lag of the stream consumer",
        parsers.number(0, what=_SECONDS),
        component="stream",
    ),
    Setting(
        "SKEWLESS_STREAM_ALLOWED_LATENESS_SECONDS",
        "3600",
        "events later than this behind the watermark are dropped",
        parsers.number(0, what=_SECONDS),
        component="stream",
    ),
)

BY_ENV: dict[str, Setting] = {s.env: s for s in TABLE}
