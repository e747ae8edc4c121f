"""Bounded, logged waits for the services a long-running process needs (Redis, MLflow).

A service calls these before it starts serving: each try is logged; after the last one
``DependencyUnavailable`` names the dependency and its URL (password masked), and the service
exits non-zero instead of hanging. Attempts and delay default to ``SKEWLESS_DEPENDENCY_ATTEMPTS``
and ``SKEWLESS_DEPENDENCY_DELAY_SECONDS``.
"""

from __future__ import annotations

import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from skewless import settings

log = logging.getLogger(__name__)


class DependencyUnavailable(RuntimeError):
    """A dependency did not answer within the configured attempts."""


def wait_for(
    name: str,
    url: str,
    probe: Callable[[], str | None],
    *,
    attempts: int | None = None,
    delay: float | None = None,
) -> None:
    """Calls ``probe`` (None when the dependency answers, else the reason) up to ``attempts``
    times, ``delay`` seconds apart."""
    attempts = attempts if attempts is not None else settings.get("SKEWLESS_DEPENDENCY_ATTEMPTS")
    delay = delay if delay is not None else settings.get("SKEWLESS_DEPENDENCY_DELAY_SECONDS")
    shown = settings.mask(url)
    started = time.monotonic()
    reason = "not tried"
    for attempt in range(1, attempts + 1):
        reason = probe()
        if reason is None:
            log.info("%s at %s answers (attempt %d/%d)", name, shown, attempt, attempts)
            return
        log.warning(
            "%s at %s is not reachable (attempt %d/%d): %s", name, shown, attempt, attempts, reason
        )
        if attempt < attempts:
            time.sleep(delay)
    raise DependencyUnavailable(
        f"{name} at {shown} is unreachable after {attempts} attempts in "
        f"{time.monotonic() - started:.1f}s ({reason}); refusing to start"
    )


def redis_probe(url: str, timeout: float = 2.0, *, cluster: bool = False):
    """PING; for a cluster node also ``cluster_state:ok`` (a forming cluster is not ready)."""

    def probe() -> str | None:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
            if cluster and _cluster_enabled(client):
                state = client.execute_command("CLUSTER", "INFO")
                state = state.decode() if isinstance(state, bytes) else str(state)
                if "cluster_state:ok" not in state:
                    return "the cluster is not ready (cluster_state is not ok)"
            return None
        except redis.RedisError as exc:
            return str(exc) or type(exc).__name__
        finally:
            client.close()

    return probe


def _cluster_enabled(client) -> bool:
    return bool(int(client.info("cluster").get("cluster_enabled", 0)))


def check_redis_mode(url: str, cluster: bool, timeout: float = 2.0) -> None:
    """Refuses a Redis whose mode disagrees with SKEWLESS_REDIS_CLUSTER (a configuration error,
    not worth a retry): a cluster node answers MOVED for most keys, a single server cannot
    serve a cluster client."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        enabled = _cluster_enabled(client)
    finally:
        client.close()
    if enabled != cluster:
        what = "a Redis Cluster node" if enabled else "a single server, not a cluster"
        raise DependencyUnavailable(
            f"Redis at {settings.mask(url)} is {what} but SKEWLESS_REDIS_CLUSTER="
            f"{str(cluster).lower()}: set SKEWLESS_REDIS_CLUSTER={str(enabled).lower()}"
        )


def tcp_probe(host: str, port: int, timeout: float = 2.0) -> Callable[[], str | None]:
    def probe() -> str | None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as exc:
            return str(exc) or type(exc).__name__

    return probe


def http_probe(url: str, timeout: float = 2.0) -> Callable[[], str | None]:
    def probe() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                return None if response.status < 400 else f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return str(getattr(exc, "reason", exc))

    return probe


def wait_for_redis(
    url: str,
    attempts: int | None = None,
    delay: float | None = None,
    *,
    cluster: bool | None = None,
) -> None:
    """Redis answers PING (a cluster: and is ready), and is a cluster exactly when ``cluster``
    (default: the SKEWLESS_REDIS_CLUSTER setting) says so."""
    if cluster is None:
        from skewless.redis_server import cluster_enabled

        cluster = cluster_enabled()
    wait_for("Redis", url, redis_probe(url, cluster=cluster), attempts=attempts, delay=delay)
    check_redis_mode(url, cluster)


def wait_for_mlflow(
    tracking_uri: str, attempts: int | None = None, delay: float | None = None
) -> None:
    """The MLflow tracking server answers /health; for a database store, its port accepts
    connections. A local store (sqlite, file) has nothing to wait for."""
    parts = urlsplit(tracking_uri)
    family = parts.scheme.split("+")[0]
    if family in ("http", "https"):
        probe = http_probe(tracking_uri.rstrip("/") + "/health")
    elif family in ("postgresql", "mysql", "mssql") and parts.hostname:
        default_port = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}[family]
        probe = tcp_probe(parts.hostname, parts.port or default_port)
    else:
        return
    wait_for("MLflow", tracking_uri, probe, attempts=attempts, delay=delay)
