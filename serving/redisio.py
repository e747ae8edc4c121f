"""Redis for the request path: fail fast, and one round trip = one write + its replies.

``client()`` builds the pooled redis-py client used for everything that is not per request.
``RoundTrips`` sends a batch of commands on a connection of the calling thread (one per thread,
re-created after a fork) as a single packed write and reads the replies - what a redis-py pipeline
does, minus its per-call machinery (~60-80 us a batch here). A connection that broke since its last
use (Redis restarted) is re-opened once, immediately; nothing else is retried.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def client(url: str, timeout: float, connect_timeout: float | None = None) -> redis.Redis:
    """A pooled client with ``timeout`` seconds per reply, ``connect_timeout`` (default: the
    same) to connect, and no retry storm."""
    return redis.Redis.from_url(
        url,
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
        """Sends the commands in one write; returns their replies (an error reply raises)."""
        connection = self._connection()
        packed = connection.pack_commands(commands)
        for attempt in (1, 2):
            try:
                connection.send_packed_command(packed, check_health=False)
                return [connection.read_response() for _ in commands]
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


def round_trips(target) -> RoundTrips:
    return target if isinstance(target, RoundTrips) else RoundTrips(target)
