"""Helpers shared by the tests: placement of skewless state, Redis databases, the sidecar's
request bodies and processes. Fixtures live in tests/conftest.py; tests import helpers from here."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from skewless import stream
from skewless.processes import group_alive, stop_group

# Environment variables that place skewless state; tests point them at temporary directories.
PLACEMENT_VARS = (
    "SKEWLESS_SPARK_DIR",
    "SKEWLESS_WAREHOUSE",
    "SKEWLESS_FEATURE_DIR",
    "SKEWLESS_FEAST_REGISTRY",
    "SKEWLESS_DROP_DIR",
    "SKEWLESS_MLFLOW_ARTIFACTS",
    "MLFLOW_TRACKING_URI",
    "AIRFLOW_HOME",
    "REDIS_URL",
)


# The session's Redis (tests/conftest.py) has this many logical databases; fresh_redis_db hands
# out 1.. once each (0 is the default one).
DATABASES = 32
_next_db = iter(range(1, DATABASES))


def fresh_redis_db(redis_url: str) -> str:
    """The URL of a logical database of the session's Redis nobody else uses, emptied first:
    Feast never overwrites a key with an older or equal timestamp, so users must not share keys."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + f"/{next(_next_db)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


def fresh_cluster(url: str) -> str:
    """Empties every primary of the cluster at ``url``; returns the URL."""
    from skewless import redis_server

    client = redis_server.connect(url, cluster=True)
    try:
        client.flushall(target_nodes=client.PRIMARIES)
    finally:
        client.close()
    return url


@dataclass(frozen=True)
class BuiltPipeline:
    """A simulated warehouse after `dbt build` and `feast apply` (not materialized)."""

    var_dir: Path
    cutoff: datetime  # the dbt cutoff: midnight after the last event
    first_day: date
    days: int

    def env(self, mp: pytest.MonkeyPatch) -> None:
        """Points skewless at this pipeline's var/ (use on a MonkeyPatch)."""
        mp.setenv("SKEWLESS_VAR_DIR", str(self.var_dir))
        for name in PLACEMENT_VARS:
            mp.delenv(name, raising=False)


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


@contextlib.contextmanager
def running_sidecar(serving_env: ServingEnv, tmp_path_factory, name: str, **extra_env: str):
    """`skewless serve` (gunicorn, 2 workers) on a free loopback port, in its own process group,
    with its own Prometheus dir and log (and ``extra_env``, e.g. SKEWLESS_API_TOKEN); yields
    (port, proc, log path) once /readyz answers 200, and stops the whole group on exit."""
    port = free_port()
    metrics_dir = tmp_path_factory.mktemp(f"prometheus-{name}")
    log_path = tmp_path_factory.mktemp(f"gunicorn-{name}") / "server.log"
    env = serving_env.subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **extra_env)
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
    """The offline truth (``monitoring.skew.offline_truth``) of the day's first n transactions in
    event-time order, read from the warehouse read-only."""
    from monitoring import skew
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


# Debian's chromium driven by selenium through Debian's chromedriver (`make setup` installs both).
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "Debian's chromium and chromium-driver are needed: `make setup` installs them "
    "(or: apt-get install chromium chromium-driver)"
)
BROWSER_WIDTH = 1280


def missing_binaries() -> list[str]:
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]


@contextlib.contextmanager
def headless_chromium(directory: Path, width: int = BROWSER_WIDTH, height: int = 1000):
    """A headless chromium with its profile and driver log under ``directory``, always quit (and
    its process group stopped). Nothing is downloaded: the driver's path is given, so
    selenium-manager never runs, and chromium's background networking is off."""
    if missing := missing_binaries():
        pytest.fail(f"{', '.join(missing)} not found. {INSTALL_HINT}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # we run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={directory / 'profile'}",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        # no connections to the web: this machine refuses them, and nothing may be fetched
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The explicit driver path skips selenium-manager; the variables keep it offline regardless.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")
        mp.setenv("SE_AVOID_STATS", "true")
        service = Service(
            executable_path=str(CHROMEDRIVER),
            log_output=str(directory / "chromedriver.log"),
            popen_kw={"start_new_session": True},  # its own process group, chromium included
        )
        driver = webdriver.Chrome(service=service, options=options)
    pgid = service.process.pid
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        try:
            driver.quit()  # closes chromium and stops chromedriver
        finally:
            if group_alive(pgid):
                stop_group(pgid)


class Consumer:
    """Starts and stops `skewless stream-consumer` processes on one Redis database (of a
    ServingEnv), each in its own process group."""

    def __init__(self, stream_env, log_dir):
        from skewless import redis_server

        self.env = stream_env.subprocess_env()
        self.client = redis_server.connect(
            stream_env.redis_url, cluster=stream_env.cfg.redis_cluster
        )
        self.log_dir = log_dir
        self.proc = None
        self.starts = 0

    def start(self, *args: str) -> None:
        self.client.hdel(stream.STATUS_KEY, "heartbeat")
        self.starts += 1
        log_path = self.log_dir / f"consumer-{self.starts}.log"
        argv = [sys.executable, "-m", "skewless.cli", "stream-consumer", *args]
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

        self.log_path = log_path
        self.wait_up()

    def wait_up(self, timeout: float = 60) -> None:
        """Waits until the running consumer has written its heartbeat."""

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"consumer exited: {self.log_path.read_text()[-3000:]}")
            return self.client.hexists(stream.STATUS_KEY, "heartbeat")

        wait_until(up, timeout=timeout, interval=0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def add(self, event, *, kind="event", arrival=None) -> str:
        return self.client.execute_command(
            *stream.xadd_command(event, kind=kind, arrival=arrival)
        ).decode()

    def status(self) -> dict:
        return stream.read_status(self.client) or {}

    def wait_for(self, **counts: int) -> dict:
        def reached():
            status = self.status()
            return status if all(int(status.get(k, 0)) == v for k, v in counts.items()) else None

        return wait_until(reached, timeout=20, interval=0.05)
