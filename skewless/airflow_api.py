"""A running Airflow and its REST API: what `make demo` and the UI tests drive the DAGs through.

- ``running(env, log_dir)``: the api-server, scheduler and dag-processor on the prepared
  environment (``orchestration.prepare_airflow``), each in its own process group with its log under
  ``log_dir``, stopped as groups on exit; ``wait_healthy`` waits for any running Airflow;
- ``Client``: the public REST API (``/api/v2``) with a token from ``POST /auth/token``;
- ``run_chain``: unpauses the DAGs, triggers the first for a day (in the run's conf) and follows;
- ``follow``: waits on a triggered run and the runs its assets start downstream, printing a line
  whenever a DAG's run changes state, and returns each run's state, real start and end times, task
  states and the day it worked on (its conf or the extra of the asset event that started it).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from skewless import orchestration, processes

COMPONENTS = {  # name: argv after `airflow`
    "api-server": ["api-server", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
}
DONE = ("success", "failed")


class AirflowError(RuntimeError):
    """The REST API answered with an error, or a component or run did not get where expected."""


@contextlib.contextmanager
def running(env: dict[str, str], log_dir: Path, timeout: float = 180) -> Iterator[str]:
    """The three components started on ``env``; yields the API's base URL once it is healthy and
    the scheduler and dag-processor report in. Stops every group on exit, even on error."""
    airflow = str(Path(sys.executable).parent / "airflow")
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in COMPONENTS.items():
            with (log_dir / f"{name}.log").open("wb") as log:
                procs[name] = subprocess.Popen(
                    [airflow, *argv],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        url = orchestration.api_url(env)
        wait_healthy(url, procs, log_dir, timeout)
        yield url
    finally:
        for proc in procs.values():
            processes.stop_group(proc)


def wait_healthy(url: str, procs: dict, log_dir: Path, timeout: float) -> None:
    """Returns once the metadata DB, the scheduler and the dag-processor report healthy at
    ``url``; fails naming the log of any of ``procs`` that exited meanwhile."""
    deadline = time.monotonic() + timeout
    health: dict = {}
    while time.monotonic() < deadline:
        dead = {name: p.returncode for name, p in procs.items() if p.poll() is not None}
        if dead:
            name = next(iter(dead))
            raise AirflowError(f"airflow {name} exited ({dead[name]}): {log_dir / name}.log")
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as answer:
                health = json.load(answer)
            parts = ("metadatabase", "scheduler", "dag_processor")
            if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                return
        time.sleep(1)
    raise AirflowError(f"Airflow not healthy after {timeout:.0f} s ({health}); logs in {log_dir}")


class Client:
    """The REST API as the documented user (``admin`` / ``admin`` on the embedded setup)."""

    def __init__(self, url: str, username: str = "admin", password: str = "admin") -> None:
        self.url = url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _send(self, method: str, path: str, body: dict | None, token: str | None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise AirflowError(f"{method} {path}: HTTP {err.code} {detail}") from None
        return json.loads(text) if text else {}

    def token(self) -> str:
        if self._token is None:
            self._token = self._send("POST", "/auth/token", self._credentials, None)["access_token"]
        return self._token

    def call(self, method: str, path: str, body: dict | None = None, **query) -> dict:
        """``method`` on ``/api/v2`` + ``path`` (query arguments URL-encoded)."""
        if query:
            path += "?" + urllib.parse.urlencode(query, doseq=True)
        return self._send(method, "/api/v2" + path, body, self.token())

    def dags(self) -> dict[str, dict]:
        return {d["dag_id"]: d for d in self.call("GET", "/dags", limit=100)["dags"]}

    def wait_for_dags(self, dag_ids: Sequence[str], timeout: float = 120) -> dict[str, dict]:
        """The DAGs once the dag-processor has stored every one of ``dag_ids``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.dags()
            missing = sorted(set(dag_ids) - set(found))
            if not missing:
                return found
            if time.monotonic() > deadline:
                errors = self.call("GET", "/importErrors")["import_errors"]
                raise AirflowError(f"DAGs not parsed after {timeout:.0f} s: {missing}; {errors}")
            time.sleep(1)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/dags/{dag_id}", {"is_paused": paused}, update_mask="is_paused")

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None) -> dict:
        """A manual run now (no logical date: its start is when it really starts)."""
        body = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self.call("POST", f"/dags/{dag_id}/dagRuns", body)

    def runs(self, dag_id: str, **query) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", limit=100, **query)["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, int]:
        found = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)
        return dict(Counter(ti["state"] or "none" for ti in found["task_instances"]))

    def run_day(self, dag_id: str, run: dict) -> str | None:
        """The data day of a run: its conf's ``day``, else the ``day`` extra of the asset events
        that started it."""
        if (run.get("conf") or {}).get("day"):
            return run["conf"]["day"]
        path = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
        days = {e["extra"].get("day") for e in self.call("GET", path)["asset_events"]}
        days.discard(None)
        return max(days) if days else None


@dataclass
class Run:
    dag_id: str
    run_id: str
    state: str
    start_date: str | None
    end_date: str | None
    day: str | None = None
    tasks: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        if not (self.start_date and self.end_date):
            return None
        start, end = (datetime.fromisoformat(d) for d in (self.start_date, self.end_date))
        return round((end - start).total_seconds(), 1)


def run_chain(
    client: Client,
    dag_ids: Sequence[str],
    day: str,
    run_id: str,
    timeout: float = 1800,
    progress: Callable[[str], None] = print,
) -> list[Run]:
    """Unpauses ``dag_ids`` once the dag-processor has stored them, triggers the first for
    ``day`` (in its conf) as ``run_id`` and follows the chain its assets start (``follow``)."""
    client.wait_for_dags(dag_ids)
    for dag_id in dag_ids:
        client.set_paused(dag_id, False)
    since = datetime.now(UTC).isoformat()
    client.trigger(dag_ids[0], {"day": day}, run_id=run_id)
    progress(f"triggered {dag_ids[0]} for {day} (run {run_id}) at {client.url}")
    return follow(client, dag_ids, run_id, since, timeout=timeout, progress=progress)


def follow(
    client: Client,
    dag_ids: Sequence[str],
    first_run_id: str,
    since: str,
    timeout: float = 1800,
    progress: Callable[[str], None] = print,
) -> list[Run]:
    """Waits until the triggered run of ``dag_ids[0]`` and the asset-triggered runs of the other
    DAGs queued after ``since`` (ISO time) have all finished, or one failed. Prints a line for each
    change of state; returns the runs in ``dag_ids`` order (a DAG never started: state "none")."""
    deadline = time.monotonic() + timeout
    seen: dict[str, dict] = {}
    started = time.monotonic()
    while True:
        for dag_id in dag_ids:
            run = _current_run(
                client, dag_id, first_run_id if dag_id == dag_ids[0] else None, since
            )
            if run and run["state"] != (seen.get(dag_id) or {}).get("state"):
                elapsed = time.monotonic() - started
                progress(f"  [{elapsed:5.0f}s] {dag_id:<16} {run['state']}")
            if run:
                seen[dag_id] = run
        finished = [seen.get(d, {}).get("state") in DONE for d in dag_ids]
        failed = any(run["state"] == "failed" for run in seen.values())
        if all(finished) or failed or time.monotonic() > deadline:
            break
        time.sleep(2)
    return [_result(client, dag_id, seen.get(dag_id)) for dag_id in dag_ids]


def _current_run(client: Client, dag_id: str, run_id: str | None, since: str) -> dict | None:
    if run_id:
        return client.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
    runs = client.runs(
        dag_id, run_type="asset_triggered", run_after_gte=since, order_by="run_after"
    )
    return runs[0] if runs else None


def _result(client: Client, dag_id: str, run: dict | None) -> Run:
    if run is None:
        return Run(dag_id, "", "none", None, None)
    return Run(
        dag_id,
        run["dag_run_id"],
        run["state"],
        run.get("start_date"),
        run.get("end_date"),
        day=client.run_day(dag_id, run),
        tasks=client.task_states(dag_id, run["dag_run_id"]),
    )
