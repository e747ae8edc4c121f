"""Runs the feature pipeline's tools (dbt, Feast) against the configured warehouse, Redis and var/.

dbt and `feast apply` run as subprocesses with the environment built here, so the same settings reach
the dbt profile (``env_var``) and ``feature_store.yaml`` (``${VAR}``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from skewless import dbtgen, redis_server, settings
from skewless.feast_layout import offline_store_type
from skewless.features import GROUPS
from skewless.settings import Settings


class StepFailed(RuntimeError):
    """A pipeline tool exited non-zero; the message carries the tail of its output."""


def dbt_environment(cfg: Settings) -> dict[str, str]:
    """The variables dbt's profile and project read (paths from settings, state under var/)."""
    return {
        "SKEWLESS_VAR_DIR": str(cfg.var_dir),
        "SKEWLESS_WAREHOUSE": str(cfg.warehouse_path),
        "SKEWLESS_FEATURE_DIR": str(cfg.feature_export_dir),
        "SKEWLESS_FEAST_REGISTRY": str(cfg.feast_registry),
        "SKEWLESS_DBT_TARGET": cfg.dbt_target,
        "SKEWLESS_SPARK_DIR": str(cfg.spark_dir),
        # read by dbt's profile (the spark ones by feature_store.spark.yaml too)
        **{
            name: str(settings.get(name))
            for name in ("SKEWLESS_DBT_THREADS", "SKEWLESS_SPARK_MASTER", "SKEWLESS_SPARK_SCHEMA")
        },
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DBT_TARGET_PATH": str(cfg.var_dir / "dbt" / "target"),
        "DBT_LOG_PATH": str(cfg.var_dir / "dbt" / "logs"),
        "DBT_PROFILES_DIR": str(cfg.dbt_profiles_dir),
    }


def tool_env(cfg: Settings, redis_url: str | None = None) -> dict[str, str]:
    """Environment for dbt and Feast subprocesses: ours on top of the caller's."""
    env = {**os.environ, **dbt_environment(cfg), "FEAST_USAGE": "False"}
    env["SKEWLESS_FEAST_REDIS"] = redis_server.feast_connection_string(
        redis_url or "redis://127.0.0.1:6379/0", cluster=cfg.redis_cluster
    )
    env["SKEWLESS_FEAST_REDIS_TYPE"] = "redis_cluster" if cfg.redis_cluster else "redis"
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path, what: str) -> str:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-40:])
        raise StepFailed(f"{what} failed (exit {proc.returncode}):\n{tail}")
    print(f"{what}: ok in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return output


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def dbt(cfg: Settings, args: list[str], *, as_of: datetime | None = None) -> str:
    """Runs a dbt command (build, test, ls …) on the project with the configured warehouse."""
    dbt_vars = {"label_delay_seconds": int(cfg.label_delay.total_seconds())}
    if as_of is not None:
        dbt_vars["features_as_of"] = as_of.strftime("%Y-%m-%d %H:%M:%S")
    cfg.feature_export_dir.mkdir(parents=True, exist_ok=True)
    cmd = [_bin("dbt"), *args, "--project-dir", str(cfg.dbt_project_dir)]
    cmd += ["--vars", json.dumps(dbt_vars)]
    return _run(cmd, tool_env(cfg), cfg.dbt_project_dir, f"dbt {' '.join(args)}")


def feast_apply(cfg: Settings, redis_url: str) -> str:
    cfg.feast_registry.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_bin("feast"), "--chdir", str(cfg.feast_repo), "apply"]
    return _run(cmd, tool_env(cfg, redis_url), cfg.feast_repo, "feast apply")


def build(cfg: Settings, *, as_of: datetime | None = None, redis_url: str | None = None) -> None:
    """dbt build of the features, then `feast apply`. Materialization stays a separate step."""
    out_of_date = dbtgen.stale(cfg.dbt_project_dir)
    if out_of_date:
        names = ", ".join(str(p.relative_to(cfg.dbt_project_dir)) for p in out_of_date)
        raise StepFailed(
            f"dbt models differ from skewless/features.py ({names}): run `skewless dbtgen`"
        )
    dbt(cfg, ["build"], as_of=as_of)
    url = redis_url or redis_server.resolve_url(cfg.redis_url, cfg.redis_dir)
    feast_apply(cfg, url)


def feature_store(cfg: Settings, redis_url: str):
    """An in-process Feast FeatureStore over the same repo and settings (imports feast lazily).

    feature_store.yaml's ${VARS} are resolved while the store is built; the environment of the
    calling process is restored afterwards.
    """
    from feast import FeatureStore

    saved = dict(os.environ)
    os.environ.update(tool_env(cfg, redis_url))
    try:
        return FeatureStore(repo_path=str(cfg.feast_repo))
    finally:
        os.environ.clear()
        os.environ.update(saved)


WRITERS = ("skewless", "feast")


def materialize(
    cfg: Settings,
    *,
    end: datetime,
    start: datetime | None = None,
    redis_url: str | None = None,
    writer: str = "skewless",
) -> dict:
    """Loads the latest feature row per entity with event time in [start, end] into Redis.

    Without ``start`` every row up to ``end`` is considered (Feast's incremental mode would start a
    year before the wall clock, which misses historical data). Naive times are UTC. Only the batch
    views (one per declared group): the streaming consumer fills the ``*_stream`` views itself.

    ``writer``: ``skewless`` writes Feast's layout directly (``skewless.online_writer``, the same
    bytes, several times faster) where it can - the embedded offline store and one Redis server -
    and otherwise falls back to ``feast``, Feast's own ``FeatureStore.materialize``.
    """
    if writer not in WRITERS:
        raise ValueError(f"writer={writer!r}: expected one of {', '.join(WRITERS)}")
    url = redis_url or redis_server.resolve_url(cfg.redis_url, cfg.redis_dir)
    start = start or datetime(1970, 1, 1)
    summary = {"redis_url": url, "start": start.isoformat(), "end": end.isoformat()}
    direct = not cfg.redis_cluster and offline_store_type(cfg.feast_repo) == "duckdb"
    if writer == "skewless" and direct:
        from skewless import online_writer

        return summary | online_writer.materialize(cfg, end=end, start=start, redis_url=url)
    store = feature_store(cfg, url)
    started = time.perf_counter()
    store.materialize(
        start_date=_utc(start), end_date=_utc(end), feature_views=[g.name for g in GROUPS]
    )
    return summary | {"writer": "feast", "seconds": round(time.perf_counter() - started, 3)}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
