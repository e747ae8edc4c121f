"""Servers for the benchmarks: each in its own process group, stopped by the group; CPU from /proc.

A server (gunicorn, `feast serve`, `mlflow models serve`) forks workers that can outlive a SIGTERM
to their parent, so each one is started with ``start_new_session=True`` and
stopped by signalling its whole group: SIGTERM, wait, then SIGKILL. ``Servers`` is a context manager
that stops every server it started, also on errors and Ctrl-C. Nothing is ever killed by name.

``group_cpu_seconds(pgid)`` sums utime + stime of every live process of a group from
``/proc/<pid>/stat``: the server's CPU, workers included, read before and after a run.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from skewless import processes

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def isolate(run_dir: Path, foreign: tuple[str, ...]) -> None:
    """A fresh ``run_dir`` as the project's var dir; the settings in ``foreign`` that could point
    at another warehouse, registry or Redis are dropped."""
    for name in foreign:
        os.environ.pop(name, None)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.environ["SKEWLESS_VAR_DIR"] = str(run_dir)
    os.environ.setdefault("DO_NOT_TRACK", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # exited meanwhile
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces


def group_cpu(pgids) -> dict[int, tuple[float, int]]:
    """{pgid: (CPU seconds of its live processes, number of processes)}."""
    wanted = {int(p): [0.0, 0] for p in pgids}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fields = _stat_fields(pid)
        if fields is None:
            continue
        pgrp = int(fields[2])
        if pgrp in wanted:
            # utime and stime are fields 14 and 15 of the stat line (1-based)
            wanted[pgrp][0] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            wanted[pgrp][1] += 1
    return {p: (cpu, n) for p, (cpu, n) in wanted.items()}


def group_cpu_seconds(pgid: int) -> float:
    return group_cpu([pgid])[pgid][0]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def pgid(self) -> int:
        return self.proc.pid  # the session leader: its pid is the group id

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def stop(server: Server, grace: float = 10.0) -> None:
    """Resumes a paused group (it handles its SIGTERM only when running), then stops it as every
    server of the project is stopped: SIGTERM, wait, SIGKILL to what is left of the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pgid, signal.SIGCONT)
    processes.stop_group(server.proc, grace)


def pause(server: Server) -> None:
    """Freezes the whole group (SIGSTOP): it uses no CPU until ``resume``."""
    os.killpg(server.pgid, signal.SIGSTOP)


def resume(server: Server) -> None:
    os.killpg(server.pgid, signal.SIGCONT)


class Servers(contextlib.AbstractContextManager):
    """Starts servers in their own process groups; stops all of them on exit (errors included)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: list[Server] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        port: int,
        ready_path: str | None,
        timeout: float = 180.0,
        cwd: Path | None = None,
    ) -> Server:
        """Starts ``argv``; returns once GET ``ready_path`` answers 200 (None: do not wait)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        server = Server(name, proc, port, log_path)
        self.running.append(server)
        if ready_path is not None:
            self.wait_ready(server, ready_path, timeout)
        return server

    def wait_ready(self, server: Server, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited ({server.proc.returncode}); log {server.log}:\n"
                    + server.tail()
                )
            try:
                if http_get(server.port, path)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{server.name} not ready after {timeout:.0f} s; log {server.log}:\n"
                    + server.tail()
                )
            time.sleep(0.25)

    def stop(self, server: Server) -> None:
        stop(server)
        if server in self.running:
            self.running.remove(server)

    def stop_all(self) -> None:
        while self.running:
            self.stop(self.running[-1])

    def __exit__(self, *exc) -> None:
        self.stop_all()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """A SIGTERM to the benchmark unwinds like Ctrl-C, so every ``finally`` stops its servers."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
