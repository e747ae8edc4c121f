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


def redis_probe(url: str, timeout: float = 2.0) -> Callable[[], str | None]:
    def probe() -> str | None:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
            return None
        except redis.RedisError as exc:
            return str(exc) or type(exc).__name__
        finally:
            client.close()

    return probe


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


def wait_for_redis(url: str, attempts: int | None = None, delay: float | None = None) -> None:
    """Redis answers PING."""
    wait_for("Redis", url, redis_probe(url), attempts=attempts, delay=delay)


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
