"""Redis goes away mid-traffic: 503s with a reason, then 200s again once it is back, without
restarting the app. Uses a Redis server of its own (stopped, restarted on the same port, frozen),
reached through a proxy that counts connection attempts, so "no retry storm" is a count, not a
timing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from skewless import redis_server
from tests.helpers import stop_group, wait_until

pytestmark = pytest.mark.slow

BODY = {
    "transaction_id": "t-fault",
    "customer_id": "c00001",
    "merchant_id": "m00001",
    "amount": 25.0,
    "event_timestamp": "2025-04-14T12:00:00Z",
}


def _restart_on(port: int, directory) -> subprocess.Popen:
    proc = subprocess.Popen(
        [redis_server.find_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_until(lambda: redis_server.ping(f"redis://127.0.0.1:{port}/0", 0.2), timeout=10)
    return proc


class CountingProxy(threading.Thread):
    """A TCP proxy on loopback to ``upstream_port``: counts every connection the app opens, and
    closes the app's side at once when the upstream refuses (Redis down)."""

    def __init__(self, upstream_port: int):
        super().__init__(daemon=True)
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.attempts = 0

    def run(self):
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.attempts += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=1)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            for source, target in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                end.close()

    def close(self):
        self.listener.close()


class Traffic(threading.Thread):
    """Scores continuously through its own test client and records (time, status, body)."""

    def __init__(self, app):
        super().__init__(daemon=True)
        self.client = app.test_client()
        self.results: list[tuple[float, int, dict]] = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            response = self.client.post("/v1/fraud/score", json=BODY)
            self.results.append((time.monotonic(), response.status_code, response.get_json()))
            time.sleep(0.002)

    def since(self, moment: float):
        return [r for r in self.results if r[0] >= moment]


def test_redis_outage_is_a_503_without_retry_storm_and_recovers_without_restart(make_app, tmp_path):
    directory = tmp_path / "redis"
    server = redis_server.start(directory)
    restarted = None
    traffic = None
    proxy = CountingProxy(server.port)
    proxy.start()
    try:
        app = make_app(REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", REDIS_TIMEOUT=0.05)
        traffic = Traffic(app)
        traffic.start()
        wait_until(lambda: len(traffic.results) >= 20, timeout=10)
        assert {r[1] for r in traffic.results} == {200}

        stopped_at = time.monotonic()
        redis_server.stop(directory)
        wait_until(lambda: any(r[1] == 503 for r in traffic.since(stopped_at)), timeout=5)
        down_from = time.monotonic()
        attempts_before = proxy.attempts
        wait_until(lambda: len(traffic.since(down_from)) >= 20, timeout=10)
        down = traffic.since(down_from)
        attempts = proxy.attempts - attempts_before
        assert {r[1] for r in down} == {503}
        for _, _, body in down:
            assert body["error"] == "service unavailable" and body["reason"].startswith("redis:")
        # No retry storm: one connection and one immediate retry per request (+1: one request
        # may be in flight at either end of the count).
        assert attempts <= 2 * (len(traffic.since(down_from)) + 1), (attempts, len(down))
        ready = app.test_client().get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["reason"].startswith("redis:")

        restarted = _restart_on(server.port, directory)
        back_at = time.monotonic()
        wait_until(lambda: any(r[1] == 200 for r in traffic.since(back_at)), timeout=5)
        recovered = time.monotonic()
        wait_until(lambda: len(traffic.since(recovered)) >= 20, timeout=10)
        assert {r[1] for r in traffic.since(recovered)} == {200}
        assert app.test_client().get("/readyz").status_code == 200

        # A frozen Redis (accepts connections, never answers): without the socket timeout no
        # request would ever come back; with it, 503s keep coming.
        os.kill(restarted.pid, signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            wait_until(lambda: len([r for r in traffic.since(frozen_at) if r[1] == 503]) >= 5, 10)
            frozen = [r for r in traffic.since(frozen_at) if r[1] == 503]
            assert frozen[0][2]["reason"].startswith("redis:")
        finally:
            os.kill(restarted.pid, signal.SIGCONT)
        thawed = time.monotonic()
        wait_until(lambda: any(r[1] == 200 for r in traffic.since(thawed)), timeout=5)
        assert all(r[1] in (200, 503) for r in traffic.results)  # never a 500
    finally:
        if traffic is not None:
            traffic.stopping.set()
            traffic.join(timeout=5)
        if restarted is not None:
            stop_group(restarted)
        redis_server.stop(directory)
        proxy.close()
