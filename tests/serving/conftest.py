"""Fixtures for the sidecar: a trained champion and materialized features, then `app`/`client`.

``serving_env`` (once per session) copies the shared built pipeline, trains the fraud champion in
the copy's MLflow and materializes the features into a Redis database of their own (13) on the
session's server. ``app`` builds a sidecar on them; each test starts with no sidecar keys (serving
log, exact-mode state, churn scores) while Feast's keys stay.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from skewless.processes import stop_group
from tests.conftest import PLACEMENT_VARS, fresh_redis_db


@dataclass(frozen=True)
class ServingEnv:
    var_dir: Path
    cfg: object  # skewless.settings.Settings of the copy
    redis_url: str  # features materialized here; the sidecar logs here too
    cutoff: datetime
    model_version: str
    run_id: str
    threshold: float  # the champion's alert threshold, derived when it was trained

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PLACEMENT_VARS}
        # feast.metrics sets PROMETHEUS_MULTIPROC*_DIR in this process on import: not for the server
        env = {k: v for k, v in env.items() if not k.startswith(("SKEWLESS_", "PROMETHEUS_"))}
        env.update(
            SKEWLESS_VAR_DIR=str(self.var_dir),
            SKEWLESS_REDIS_URL=self.redis_url,
            SKEWLESS_REDIS_CLUSTER=str(self.cfg.redis_cluster).lower(),
            OMP_NUM_THREADS="1",
            **extra,
        )
        return env


def clear_sidecar_keys(client) -> None:
    keys = list(client.scan_iter(match="skewless:*", count=1000))
    if keys:
        client.unlink(*keys)


@pytest.fixture(scope="session")
def serving_env(built_pipeline, redis_url, tmp_path_factory) -> ServingEnv:

    from models import training
    from skewless import pipeline, settings

    var_dir = tmp_path_factory.mktemp("serving") / "var"
    shutil.copytree(built_pipeline.var_dir, var_dir)
    url = fresh_redis_db(redis_url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKEWLESS_VAR_DIR", str(var_dir))
        for name in (*PLACEMENT_VARS, "SKEWLESS_MODEL_CONFIG"):
            mp.delenv(name, raising=False)
        cfg = settings.load()
        result = training.train("fraud", cfg=cfg)
        pipeline.materialize(cfg, end=built_pipeline.cutoff, redis_url=url)
    env = ServingEnv(
        var_dir,
        cfg,
        url,
        built_pipeline.cutoff,
        result["model_version"],
        result["run_id"],
        result["alert_threshold"],
    )
    yield env
    import redis

    leftover = redis.Redis.from_url(url)
    leftover.flushdb()
    leftover.close()


@pytest.fixture(scope="session")
def transactions(serving_env):
    """The warehouse's staged transactions (read-only), in event-time order."""
    from skewless import warehouse

    con = warehouse.connect(serving_env.cfg.warehouse_path, read_only=True)
    try:
        return con.execute(
            "select * from stg_raw__transactions order by event_timestamp, transaction_id"
        ).fetchdf()
    finally:
        con.close()


@pytest.fixture
def redis_client(serving_env):
    """The serving tests' database on the session's Redis, without sidecar keys."""
    import redis

    client = redis.Redis.from_url(serving_env.redis_url)
    clear_sidecar_keys(client)
    yield client
    clear_sidecar_keys(client)
    client.close()


@pytest.fixture
def make_app(serving_env, redis_client):
    """Builds a sidecar on the session's model and Redis; ``KEY=...`` leaves a key unset (to
    come from the environment)."""
    from serving.app import create_app

    apps = []

    def make(**config):
        base = {
            "SETTINGS": serving_env.cfg,
            "REDIS_URL": serving_env.redis_url,
            "MODEL_CHECK_SECONDS": 0,
            "API_TOKEN": None,
            "SERVING_MODE": "materialized",
        }
        merged = {k: v for k, v in {**base, **config}.items() if v is not ...}  # ...: drop it
        app = create_app(merged)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["skewless"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def score_body(row, **overrides) -> dict:
    """A scoring request for one staged transaction row."""
    body = {
        "transaction_id": str(row["transaction_id"]),
        "customer_id": str(row["customer_id"]),
        "merchant_id": str(row["merchant_id"]),
        "amount": float(row["amount"]),
        "event_timestamp": row["event_timestamp"].isoformat(),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


# -- processes ----------------------------------------------------------------------------------


@contextlib.contextmanager
def running_sidecar(serving_env: ServingEnv, tmp_path_factory, name: str):
    """`skewless serve` (gunicorn, 2 workers) on a free loopback port, in its own process group,
    with its own Prometheus dir and log; yields (port, proc, log path) once /readyz answers 200,
    and stops the whole group on exit."""
    port = free_port()
    metrics_dir = tmp_path_factory.mktemp(f"prometheus-{name}")
    log_path = tmp_path_factory.mktemp(f"gunicorn-{name}") / "server.log"
    env = serving_env.subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    argv = [sys.executable, "-m", "skewless.cli", "serve", "--port", str(port), "--workers", "2"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:

        def ready():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited {proc.returncode}: {log_path.read_text()[-3000:]}"
                )
            try:
                return http_get(port, "/readyz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=90, interval=0.2)
        yield port, proc, log_path
    finally:
        stop_group(proc)


def day_truth_rows(warehouse_path, day, n: int):
    """The offline truth (``serving.skew.offline_truth``) of the day's first n transactions in
    event-time order, read from the warehouse read-only."""
    from serving import skew
    from skewless import warehouse

    con = warehouse.connect(warehouse_path, read_only=True)
    try:
        ids = con.execute(
            "select transaction_id from stg_raw__transactions where event_timestamp::date = ? "
            "order by event_timestamp, transaction_id limit ?",
            [day, n],
        ).fetchdf()["transaction_id"]
        return skew.offline_truth(con, ids).reset_index(drop=True)
    finally:
        con.close()


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET on 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def unescape_pointer(pointer: str) -> list[str]:
    """RFC 6901's reference tokens of a JSON Pointer ("" is the whole document)."""
    assert pointer == "" or pointer.startswith("/"), pointer
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
