"""stop_group: SIGTERM, then SIGKILL for whatever of the group outlived its leader."""

from __future__ import annotations

import subprocess
import sys
import time

from skewless.processes import group_alive, stop_group

# A leader that exits on SIGTERM and a child that ignores it (a worker that outlives its master).
_SCRIPT = """
import signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('child', flush=True); time.sleep(600)"])
time.sleep(600)
"""


def _start():
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout.readline().strip() == b"child"
    return proc


def test_stops_the_whole_group_including_children_that_ignore_sigterm():
    proc = _start()
    started = time.monotonic()
    stop_group(proc, grace=120)
    assert proc.returncode is not None
    assert not group_alive(proc.pid)
    assert time.monotonic() - started < 60  # the leader exits on SIGTERM: the grace is not waited


def test_by_pid_and_twice_is_fine():
    proc = _start()
    stop_group(proc.pid, grace=5)
    assert not group_alive(proc.pid)
    stop_group(proc.pid)  # already gone
    proc.wait(timeout=5)
