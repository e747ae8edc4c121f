"""Setup of the sidecar benchmark: its private environment, the data and the fraud champion, and
the servers it measures (each in its own process group, see bench/procs.py)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bench import procs
from bench.features import FOREIGN_ENV

if TYPE_CHECKING:
    from bench.sidecar_load import Mode

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = PROJECT_ROOT / "var" / "bench" / "sidecar"
BIN = Path(sys.executable).parent


# -- environment ----------------------------------------------------------------------------------


def isolate_env(redis_cluster: bool) -> dict[str, str]:
    """Drops settings that could point at another warehouse, Redis or MLflow, points the project
    at RUN_DIR and returns a copy of the environment, taken before feast's import adds its
    PROMETHEUS_* variables."""
    for name in [*FOREIGN_ENV, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"]:
        os.environ.pop(name, None)
    for name in [k for k in os.environ if k.startswith("SKEWLESS_")]:
        os.environ.pop(name)
    os.environ.update(SKEWLESS_VAR_DIR=str(RUN_DIR), DO_NOT_TRACK="1", FEAST_USAGE="False")
    os.environ["SKEWLESS_REDIS_CLUSTER"] = str(redis_cluster).lower()
    return dict(os.environ)


def fresh_run_dir(cfg) -> None:
    """Stops a Redis left running by an interrupted run and empties RUN_DIR."""
    from skewless import redis_server

    if redis_server.status(cfg.redis_dir):
        redis_server.stop(cfg.redis_dir)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)


def server_env(base: dict, cfg, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("SKEWLESS_", "PROMETHEUS_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{base.get('PATH', '')}",  # mlflow execs uvicorn by name
        SKEWLESS_VAR_DIR=str(cfg.var_dir),
        SKEWLESS_REDIS_URL=redis_url,
        OMP_NUM_THREADS="1",
        DO_NOT_TRACK="1",
        FEAST_USAGE="False",
        MLFLOW_TRACKING_URI=cfg.mlflow_tracking_uri,
        MLFLOW_REGISTRY_URI=cfg.mlflow_tracking_uri,
        XDG_CACHE_HOME=str(cfg.var_dir / "cache"),
        MLFLOW_ENV_ROOT=str(cfg.var_dir / "cache" / "mlflow-envs"),
        SKEWLESS_REDIS_CLUSTER=str(cfg.redis_cluster).lower(),
        **extra,
    )
    return env


# -- data and model -------------------------------------------------------------------------------


def timed(report: dict, step: str, fn, *args, **kwargs):
    """Runs ``fn``; its wall seconds go to ``report["setup_seconds"][step]`` and are printed."""
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    report["setup_seconds"][step] = seconds = round(time.perf_counter() - started, 2)
    print(f"  {step:<20} {seconds:6.1f} s", flush=True)
    return value


def build_warehouse(cfg, args, report: dict) -> date:
    """Simulated transactions imported and built: per-transaction feature rows for every day and
    snapshot rows at the batch cutoff (midnight before the last day). Returns the held-out last
    day: its requests are the load, its per-transaction rows the skew report's offline truth."""
    from skewless import importer, pipeline, simulate

    frame = timed(
        report,
        "simulate",
        simulate.generate,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        tx_per_day=args.tx_per_day,
        label_delay_days=cfg.label_delay / timedelta(days=1),
    )
    held_out = frame["event_timestamp"].max().date()
    cutoff = datetime.combine(held_out, datetime.min.time())
    report["data"] = {"transactions": len(frame), "held_out_day": held_out.isoformat()}
    report["data"]["held_out_transactions"] = int((frame["event_timestamp"] >= cutoff).sum())
    path = simulate.write(frame, cfg.var_dir / "raw" / "transactions.parquet")
    timed(report, "import", importer.import_transactions, path)
    timed(report, "dbt_build", pipeline.dbt, cfg, ["build"], as_of=cutoff)
    return held_out


def train_champion(cfg, day: date, report: dict) -> None:
    """The fraud champion, trained on what was known at the batch cutoff."""
    from models import training

    cutoff = datetime.combine(day, datetime.min.time())
    result = timed(report, "train_fraud", training.train, "fraud", as_of=cutoff, cfg=cfg)
    report["model"] = {"name": "fraud", "version": result["model_version"]}


def write_bodies(cfg, day: date, path: Path) -> list[dict]:
    """The day's transactions as scoring requests, in arrival order (as `skewless replay` sends)."""
    from skewless.replay import day_frames

    feed, _ = day_frames(cfg, day)
    bodies = [
        {
            "transaction_id": str(row.transaction_id),
            "customer_id": str(row.customer_id),
            "merchant_id": str(row.merchant_id),
            "amount": float(row.amount),
            "event_timestamp": row.event_timestamp.isoformat(),
        }
        for row in feed.itertuples(index=False)
    ]
    path.write_text(json.dumps(bodies))
    return bodies


def prepare_data(cfg, args, report: dict, redis_url: str) -> tuple[date, list[dict]]:
    """Warehouse, `feast apply` beside the champion's training, and the request bodies. Returns
    the held-out day and its bodies (also written to RUN_DIR/bodies.json)."""
    from skewless import pipeline

    print("setup: simulate, import, dbt build, feast apply + train", flush=True)
    day = build_warehouse(cfg, args, report)
    with ThreadPoolExecutor(1) as pool:  # `feast apply` runs as a subprocess
        apply = pool.submit(timed, report, "feast_apply", pipeline.feast_apply, cfg, redis_url)
        train_champion(cfg, day, report)
        apply.result()
    return day, write_bodies(cfg, day, RUN_DIR / "bodies.json")


# -- servers --------------------------------------------------------------------------------------


def start_feast(servers: procs.Servers, env: dict, cfg, args) -> procs.Server:
    """`feast serve` over the same repo, registry and Redis, tuned as its users would: no worker
    recycling (the default restarts its worker every 1000 requests), no access log."""
    from skewless.pipeline import tool_env

    port = procs.free_port()
    argv = [str(BIN / "feast"), "--chdir", str(cfg.feast_repo), "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--max-requests", "0", "--no-access-log"]
    argv += ["--workers", str(args.feast_workers)]
    feast_env = {**tool_env(cfg, env["SKEWLESS_REDIS_URL"]), **env}
    return servers.start("feast", argv, feast_env, port=port, ready_path=None)


def start_serving(servers: procs.Servers, env: dict, cfg, args) -> dict:
    """The sidecar and `mlflow models serve`, started side by side."""
    started = {}
    port = procs.free_port()
    argv = [str(BIN / "skewless"), "serve", "--port", str(port)]
    argv += ["--workers", str(args.workers), "--threads", str(args.threads)]
    sidecar_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(cfg.var_dir / "prometheus")}
    started["sidecar"] = servers.start("sidecar", argv, sidecar_env, port=port, ready_path=None)
    port = procs.free_port()
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/fraud@champion"]
    argv += ["--workers", str(args.mlflow_workers), "--env-manager", "local"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    started["mlflow"] = servers.start("mlflow", argv, env, port=port, ready_path=None)
    return started


def start_servers(
    servers: procs.Servers, env: dict, cfg, modes: list[Mode], args, report: dict, day: date
) -> dict:
    """Every server started, the online store materialized at the cutoff while they start, the
    modes' stream consumers started after it (materialize rewrites the Feast registry that a
    consumer checks when it starts), and each server ready. Returns the servers by name."""
    from skewless import pipeline

    print("servers: sidecar, feast serve, mlflow models serve; materialize", flush=True)
    started = start_serving(servers, env, cfg, args)
    started["feast"] = start_feast(servers, env, cfg, args)
    cutoff = datetime.combine(day, datetime.min.time())
    redis_url = env["SKEWLESS_REDIS_URL"]
    timed(report, "materialize", pipeline.materialize, cfg, end=cutoff, redis_url=redis_url)
    for mode in modes:
        if mode.consumer:
            name = f"consumer-{mode.name}"
            argv = [str(BIN / "skewless"), *mode.consumer]
            started[name] = servers.start(name, argv, env, port=0, ready_path=None)
    for name, path in (("sidecar", "/readyz"), ("feast", "/health"), ("mlflow", "/ping")):
        servers.wait_ready(started[name], path, timeout=240)
    return started
