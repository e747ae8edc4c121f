"""A small HTTP load generator: open loop at a constant rate (latency from each request's scheduled
send time, so a slow server cannot hide its queue: no coordinated omission) and closed loop with a
few connections (maximum throughput).

Pure Python on raw keep-alive sockets (TCP_NODELAY, one per thread, a minimal HTTP/1.1 reader) so it
costs little: ``bench.sidecar`` runs it as a separate process (``python -m bench.loadgen SPEC OUT``)
that shares no GIL with anything, measures its own CPU per request and calibrates it against a null
server (``python -m bench.loadgen --null-server PORT``), the floor of client + loopback.

Targets (``spec["target"]["kind"]``):
- ``sidecar``: POST /v1/fraud/score with a transaction (and its ``mode``);
- ``chain``: POST ``feast serve``'s /get-online-features for the feature service, compute the
  request-time features (``skewless.features.request_features``), POST the row to
  ``mlflow models serve``'s /invocations (``dataframe_split``): one request = both calls;
- ``null``: GET / of the null server.
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from bench.loadgen_loops import CpuMeter, max_throughput, open_loop


class ConnectionClosed(ConnectionError):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection on loopback; reconnects once if the server closed it."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.port, self.timeout = port, timeout
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.connects = 0

    def _connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buffer = sock, b""
        self.connects += 1

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def request(self, raw: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            reused = self.sock is not None
            if not reused:
                self._connect()
            try:
                self.sock.sendall(raw)
                return self._response()
            except (ConnectionError, OSError):
                self.close()
                if attempt == 2 or not reused:  # only a stale keep-alive connection is retried
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed("server closed the connection")
        return chunk

    def _response(self) -> tuple[int, bytes]:
        buf = self.buffer
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        lines = buf[:end].decode("latin-1").split("\r\n")
        rest = buf[end + 4 :]
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                close = value.strip().lower() == "close"
        if chunked:
            body, rest = self._chunked(rest)
        else:
            while len(rest) < length:
                rest += self._recv()
            body, rest = rest[:length], rest[length:]
        self.buffer = rest
        if close:
            self.close()
        return status, body

    def _chunked(self, buf: bytes) -> tuple[bytes, bytes]:
        body = []
        while True:
            while (end := buf.find(b"\r\n")) < 0:
                buf += self._recv()
            size = int(buf[:end].split(b";")[0], 16)
            buf = buf[end + 2 :]
            while len(buf) < size + 2:
                buf += self._recv()
            if size == 0:
                while (end := buf.find(b"\r\n")) != 0:  # trailers, then the blank line
                    if end < 0:
                        buf += self._recv()
                    else:
                        buf = buf[end + 2 :]
                return b"".join(body), buf[2:]
            body.append(buf[:size])
            buf = buf[size + 2 :]


def post(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- targets: what one request is -----------------------------------------------------------------


class SidecarTarget:
    def __init__(self, spec: dict, bodies: list[dict]):
        self.port = spec["port"]
        mode = spec.get("mode")
        extra = {"mode": mode} if mode else {}
        self.raws = [post(self.port, spec["path"], _dumps({**b, **extra})) for b in bodies]

    def open(self) -> list[Connection]:
        return [Connection(self.port)]

    def call(self, conns: list[Connection], i: int) -> int:
        return conns[0].request(self.raws[i % len(self.raws)])[0]


class ChainTarget:
    """feast serve (features) then mlflow models serve (model), glued as a caller would."""

    def __init__(self, spec: dict, bodies: list[dict]):
        self.feast_port, self.mlflow_port = spec["feast_port"], spec["mlflow_port"]
        self.columns = spec["columns"]
        self.bodies = bodies
        service, keys = spec["feature_service"], spec["join_keys"]
        self.raws = [
            post(
                self.feast_port,
                "/get-online-features",
                _dumps({"feature_service": service, "entities": {k: [b[k]] for k in keys}}),
            )
            for b in bodies
        ]
        self.times = [datetime.fromisoformat(b["event_timestamp"]) for b in bodies]
        from skewless.features import request_features

        self.request_features = request_features
        self.splits: list[tuple[float, float, float]] = []  # (feast, glue, mlflow) seconds

    def breakdown(self) -> dict:
        """Mean milliseconds per request in each part of the chain, client side."""
        n = max(len(self.splits), 1)
        return {
            part: round(sum(s[k] for s in self.splits) / n * 1000, 3)
            for k, part in enumerate(("feast", "glue", "mlflow"))
        }

    def open(self) -> list[Connection]:
        return [Connection(self.feast_port), Connection(self.mlflow_port)]

    def features(self, doc: dict) -> dict:
        names = doc["metadata"]["feature_names"]
        return {n: r["values"][0] for n, r in zip(names, doc["results"], strict=True)}

    def score(self, conns: list[Connection], i: int) -> tuple[int, float | None]:
        k = i % len(self.raws)
        started = time.perf_counter()
        status, text = conns[0].request(self.raws[k])
        if status != 200:
            return status, None
        read = time.perf_counter()
        values = self.features(json.loads(text))
        body = self.bodies[k]
        values.update(self.request_features(body["amount"], self.times[k], values))
        row = [values[c] for c in self.columns]
        payload = _dumps({"dataframe_split": {"columns": self.columns, "data": [row]}})
        raw = post(self.mlflow_port, "/invocations", payload)
        glued = time.perf_counter()
        status, text = conns[1].request(raw)
        if status != 200:
            return status, None
        probability = float(json.loads(text)["predictions"][0])
        self.splits.append((read - started, glued - read, time.perf_counter() - glued))
        return status, probability

    def call(self, conns: list[Connection], i: int) -> int:
        return self.score(conns, i)[0]


class NullTarget:
    def __init__(self, spec: dict, bodies: list[dict]):
        self.port = spec["port"]
        self.raw = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode()

    def open(self) -> list[Connection]:
        return [Connection(self.port)]

    def call(self, conns: list[Connection], i: int) -> int:
        return conns[0].request(self.raw)[0]


TARGETS = {"sidecar": SidecarTarget, "chain": ChainTarget, "null": NullTarget}


def make_target(spec: dict):
    bodies = json.loads(Path(spec["bodies"]).read_text()) if spec.get("bodies") else []
    return TARGETS[spec["kind"]](spec, bodies)


# -- one run (bench/loadgen_loops.py drives it) ---------------------------------------------------


def run(spec: dict) -> dict:
    target = make_target(spec["target"])
    meter = CpuMeter({k: int(v) for k, v in spec.get("cpu_pgids", {}).items()})
    run_spec = dict(spec["run"])
    kind = run_spec.pop("kind")
    gc.collect()
    gc.disable()  # no collector pauses in the client's timings
    try:
        if kind == "open":
            result = open_loop(target, meter, **run_spec)
        elif kind == "max_throughput":
            result = max_throughput(target, meter, **run_spec)
        else:
            raise ValueError(f"unknown run kind {kind!r}")
    finally:
        gc.enable()
    if hasattr(target, "breakdown"):
        result["breakdown_ms"] = target.breakdown()
    return result


# -- the null server (calibration) ----------------------------------------------------------------


def null_server(port: int) -> None:
    """Answers every request on loopback with a fixed 200, one thread per connection."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn:
            while True:
                while (end := buf.find(b"\r\n\r\n")) < 0:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head = buf[:end].lower()
                length = 0
                if (at := head.find(b"content-length:")) >= 0:
                    length = int(head[at + 15 :].split(b"\r\n")[0])
                buf = buf[end + 4 :]
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                conn.sendall(answer)

    with socket.create_server(("127.0.0.1", port), backlog=64) as server:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("spec", nargs="?", type=Path, help="JSON: target, run, cpu_pgids")
    parser.add_argument("out", nargs="?", type=Path, help="where the JSON result goes")
    parser.add_argument("--null-server", type=int, metavar="PORT", help="run the null server")
    args = parser.parse_args(argv)
    if args.null_server:
        null_server(args.null_server)
        return 0
    if not args.spec or not args.out:
        parser.error("SPEC and OUT are required")
    result = run(json.loads(args.spec.read_text()))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
