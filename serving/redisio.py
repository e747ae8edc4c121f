"""Redis for the request path: fail fast, and one round trip = one write + its replies.

``client()`` builds the pooled redis-py client used for everything that is not per request.
``RoundTrips`` sends a batch of commands on a connection of the calling thread (one per thread,
re-created after a fork) as a single packed write and reads the replies - what a redis-py pipeline
does, minus its per-call machinery (~60-80 us a batch here). A connection that broke since its last
use (Redis restarted) is re-opened once, immediately; nothing else is retried.

``ClusterRoundTrips`` does the same on a Redis Cluster: the batch is split by the node owning each
command's key slot, written to every node first and then read, so a request still waits for one
round trip (the slowest node's). A MOVED reply (the slot moved: resharding, failover) refreshes
the slot map and resends only the redirected commands; an ASK reply resends the command to the
importing node after ASKING. Every command must name its key first (EVAL: its keys, all in one
slot).

Lua scripts go by their SHA1 (``script(source)`` registers one and returns the EVALSHA command's
head): a request sends a few dozen bytes instead of the script, and Redis does not hash the source
again. A server that does not hold the script (restarted, flushed, a new cluster node) answers
NOSCRIPT; both round-trip classes then send just those commands again as EVAL, which also loads
the script for the next time. The other replies of the batch stand: every command was executed
once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

_SCRIPTS: dict[str, str] = {}  # SHA1 -> Lua source, of every script(...)


def script(source: str) -> tuple[str, str]:
    """``("EVALSHA", sha1)``: the head of a command running the Lua ``source`` through the round
    trips below (keys and arguments follow, as for EVAL)."""
    sha = hashlib.sha1(source.encode()).hexdigest()
    _SCRIPTS[sha] = source
    return "EVALSHA", sha


def _unknown_scripts(commands: Sequence[Sequence], replies: list) -> list[int]:
    """The indexes of the EVALSHA commands answered NOSCRIPT."""
    return [
        i
        for i, reply in enumerate(replies)
        if isinstance(reply, redis.exceptions.NoScriptError)
        and str(commands[i][0]).upper() == "EVALSHA"
        and commands[i][1] in _SCRIPTS
    ]


def _with_scripts(send, commands: Sequence[Sequence], replies: list) -> list:
    """``replies``, those NOSCRIPT answered taken from sending their commands again as EVAL
    (``send``: the round trip, replies in order, errors as values); the first error reply
    raises."""
    unknown = _unknown_scripts(commands, replies)
    if unknown:
        again = [("EVAL", _SCRIPTS[commands[i][1]], *commands[i][2:]) for i in unknown]
        for i, reply in zip(unknown, send(again), strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies


def client(
    url: str, timeout: float, connect_timeout: float | None = None, *, cluster: bool = False
):
    """A pooled client with ``timeout`` seconds per reply, ``connect_timeout`` (default: the
    same) to connect, and no retry storm; a ``RedisCluster`` when ``cluster``."""
    from skewless import redis_server

    return redis_server.connect(
        url,
        cluster=cluster,
        socket_timeout=timeout,
        socket_connect_timeout=timeout if connect_timeout is None else connect_timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=0,
    )


class RoundTrips:
    def __init__(self, redis_client: redis.Redis):
        self.client = redis_client
        pool = redis_client.connection_pool
        self._make = lambda: pool.connection_class(**pool.connection_kwargs)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list = []

    def _connection(self):
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection = self._make()
            local.pid = os.getpid()
            with self._lock:
                self._connections.append(local.connection)
        return local.connection

    def __call__(self, *commands: Sequence) -> list:
        """Sends the commands in one write; returns their replies (an error reply raises, once
        every reply was read)."""
        return _with_scripts(self._send, commands, self._send(commands))

    def _send(self, commands: Sequence[Sequence]) -> list:
        """One write, every reply read: error replies are returned as exceptions."""
        connection = self._connection()
        packed = connection.pack_commands(commands)
        for attempt in (1, 2):
            try:
                connection.send_packed_command(packed, check_health=False)
                replies = []
                for _ in commands:
                    try:
                        replies.append(connection.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
                return replies
            except redis.ConnectionError:
                connection.disconnect()
                if attempt == 2:
                    raise
            except BaseException:
                connection.disconnect()  # replies may be left unread on it
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.disconnect()


class ClusterRoundTrips:
    """``RoundTrips`` for a ``redis.cluster.RedisCluster`` (see the module docstring)."""

    MAX_REDIRECTS = 5

    def __init__(self, cluster_client):
        self.client = cluster_client
        self._nodes = cluster_client.nodes_manager
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list = []

    def _key_slot(self, command: Sequence) -> int:
        name = str(command[0]).upper()
        if name in ("EVAL", "EVALSHA"):
            count = int(command[2])
            if count < 1:
                raise ValueError(f"{name} without keys cannot be routed in a Redis Cluster")
            slots = {self.client.keyslot(k) for k in command[3 : 3 + count]}
            if len(slots) > 1:
                raise ValueError(f"{name} keys {command[3 : 3 + count]} span hash slots {slots}")
            return slots.pop()
        if len(command) < 2:
            raise ValueError(f"{name} names no key: it cannot be routed in a Redis Cluster")
        return self.client.keyslot(command[1])

    def _connection(self, host: str, port: int):
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connections = {}
            local.pid = os.getpid()
        connection = local.connections.get((host, port))
        if connection is None:
            template = next(
                n.redis_connection for n in self._nodes.nodes_cache.values() if n.redis_connection
            )
            pool = template.connection_pool
            kwargs = {**pool.connection_kwargs, "host": host, "port": port}
            connection = local.connections[(host, port)] = pool.connection_class(**kwargs)
            with self._lock:
                self._connections.append(connection)
        return connection

    def __call__(self, *commands: Sequence) -> list:
        """Sends the commands, one write per node; returns their replies in order (an error
        reply raises, after every reply was read)."""
        return _with_scripts(self._round_trip, commands, self._round_trip(commands))

    def _round_trip(self, commands: Sequence[Sequence]) -> list:
        """The replies of ``commands`` in order, error replies as exceptions, redirections
        followed."""
        replies: list = [None] * len(commands)
        todo = {i: None for i in range(len(commands))}  # index -> ASK target (host, port) or None
        broken = 0  # connection failures: one immediate retry, as RoundTrips
        for _ in range(self.MAX_REDIRECTS + 1):
            todo, refresh, error = self._send(commands, todo, replies)
            if not todo:
                break
            if isinstance(error, redis.ConnectionError):
                broken += 1
                if broken > 1:
                    raise error
            if refresh:
                self._refresh()
        else:
            raise error
        return replies

    def _send(self, commands, todo: dict, replies: list):
        """One round trip for the commands in ``todo``: fills ``replies``; returns the commands
        to send again (redirected, or on a broken connection), whether the slot map is stale, and
        the last error."""
        batches: dict[tuple[str, int], list[tuple[int, bool]]] = {}
        for i, asked in todo.items():
            if asked is None:
                node = self._nodes.get_node_from_slot(self._key_slot(commands[i]))
                address = (node.host, node.port)
            else:
                address = asked
            batches.setdefault(address, []).append((i, asked is not None))
        again, refresh, error = {}, False, None
        sent = []
        for address, items in batches.items():
            connection = self._connection(*address)
            packed = []
            for i, asking in items:
                if asking:
                    packed.append(("ASKING",))
                packed.append(commands[i])
            try:
                connection.send_packed_command(connection.pack_commands(packed), check_health=False)
                sent.append((connection, items))
            except redis.ConnectionError as exc:
                connection.disconnect()
                again.update((i, None) for i, _ in items)
                refresh, error = True, exc
        for k, (connection, items) in enumerate(sent):
            for n, (i, asking) in enumerate(items):
                try:
                    if asking:
                        connection.read_response()
                    replies[i] = connection.read_response()
                except redis.exceptions.MovedError as exc:
                    again[i], refresh, error = None, True, exc
                except redis.exceptions.AskError as exc:
                    again[i], error = (exc.host, exc.port), exc
                except redis.ResponseError as exc:
                    replies[i] = exc
                except redis.ConnectionError as exc:
                    connection.disconnect()
                    again.update((j, None) for j, _ in items[n:])
                    refresh, error = True, exc
                    break
                except BaseException:
                    for unread, _ in sent[k:]:  # replies may be left unread on these
                        unread.disconnect()
                    raise
        return again, refresh, error

    def _refresh(self) -> None:
        """Reloads the slot map from the cluster (CLUSTER SLOTS)."""
        from redis.exceptions import RedisClusterException

        try:
            self._nodes.initialize()
        except RedisClusterException as exc:  # no node reachable: not a redis.RedisError
            raise redis.ConnectionError(f"Redis Cluster: {exc}") from None

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.disconnect()


def round_trips(target) -> RoundTrips | ClusterRoundTrips:
    """``target`` itself when it is one already, else the round trips of a redis-py client."""
    if isinstance(target, RoundTrips | ClusterRoundTrips):
        return target
    from redis.cluster import RedisCluster

    return ClusterRoundTrips(target) if isinstance(target, RedisCluster) else RoundTrips(target)
