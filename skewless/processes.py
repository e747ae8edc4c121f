"""Servers in their own process group, stopped as a whole.

Redis, gunicorn, the streaming consumer, `airflow standalone` and `mlflow server` fork children that
can outlive a SIGTERM to their parent. Each is started with ``start_new_session=True`` (its pid is
its process group id) and stopped with ``stop_group``: SIGTERM to the group, wait for the leader,
then SIGKILL to whatever is left of the group. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - alive, but not ours to signal
        return True
    return True


def _leader_gone(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:  # not our child (started by another command): poll it instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def stop_group(target: int | subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the group led by ``target`` (a pid or a Popen), up to ``grace`` seconds for the
    leader to exit, then SIGKILL to any process of the group still alive (workers that outlived
    their master). Returns once the group is gone; a group already gone is fine."""
    pid = target.pid if isinstance(target, subprocess.Popen) else int(target)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if isinstance(target, subprocess.Popen):
            if target.poll() is not None:
                break
        elif _leader_gone(pid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if isinstance(target, subprocess.Popen):
        target.wait(timeout=10)
    else:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    deadline = time.monotonic() + 2
    while group_alive(pid) and time.monotonic() < deadline:  # SIGKILL is asynchronous
        time.sleep(0.02)
