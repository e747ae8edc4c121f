"""Airflow past the embedded defaults: PostgreSQL metadata and a parallel executor, for real.

A private PostgreSQL server (tests/postgres.py) holds Airflow's metadata DB. The environment is
the one `skewless airflow` builds (orchestration.prepare_airflow: dbt manifest, `airflow db
migrate`, the warehouse pool), with the user's AIRFLOW__DATABASE__SQL_ALCHEMY_CONN winning over
the SQLite default. Then the compose stack's components run as processes, each in its own process
group: `airflow api-server` (the execution API the task workers report to), `airflow scheduler`
(LocalExecutor, parallelism 4) and `airflow dag-processor`. Their dags folder holds the project's
DAGs (symlinked) and a probe DAG of three tasks that each sleep and record when they ran; the probe
is triggered with `airflow dags trigger`. Proof: the run succeeds, the three tasks' recorded
intervals overlap (they ran at the same time, in different processes), task_instance in Postgres
says success for all three with overlapping start/end, and the project's DAGs parsed with no import
errors.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skewless import orchestration, processes, settings
from tests.postgres import HOST, USER, free_port, private_postgres

pytestmark = pytest.mark.slow

DAG_ID = "skewless_parallel_probe"
TASKS = ("sleep_0", "sleep_1", "sleep_2")
PROBE = '''"""Test-only: three independent tasks that sleep and record when they ran."""

import json
import os
import time
from datetime import datetime

from airflow.sdk import dag, task

RECORD = {record!r}


def ancestors():
    """The pids above this process, up to init (Linux /proc)."""
    found, pid = [], os.getppid()
    while pid > 1:
        found.append(pid)
        with open(f"/proc/{{pid}}/stat") as stat:
            pid = int(stat.read().rsplit(")", 1)[1].split()[1])
    return found


@dag(
    dag_id={dag_id!r},
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
)
def probe():
    for i in range({n}):

        @task(task_id=f"sleep_{{i}}")
        def sleep():
            start = time.time()
            time.sleep(3)
            line = {{"pid": os.getpid(), "ancestors": ancestors(), "start": start, "end": time.time()}}
            with open(RECORD, "a") as out:
                out.write(json.dumps(line) + "\\n")

        sleep()


probe()
'''
AIRFLOW = str(Path(sys.executable).parent / "airflow")
SERVERS = {  # name: argv after `airflow`
    "api-server": ["api-server", "--apps", "execution", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
}


def _connect(port: int, dbname: str = "airflow"):
    import psycopg2

    return psycopg2.connect(host=HOST, port=port, user=USER, dbname=dbname)


def _query(port: int, sql: str, args: tuple = ()) -> list[tuple]:
    con = _connect(port)
    try:
        with con.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Postgres, the prepared Airflow environment, and api-server + scheduler + dag-processor."""
    base = tmp_path_factory.mktemp("airflow-pg")
    dags_folder = base / "dags"
    dags_folder.mkdir()
    for dag_file in sorted((settings.PROJECT_ROOT / "dags").glob("*.py")):
        (dags_folder / dag_file.name).symlink_to(dag_file)
    record = base / "probe.jsonl"
    (dags_folder / "parallel_probe.py").write_text(
        PROBE.format(record=str(record), dag_id=DAG_ID, n=len(TASKS))
    )
    with private_postgres(databases=("airflow",)) as port, pytest.MonkeyPatch.context() as mp:
        conn = f"postgresql+psycopg2://{USER}@{HOST}:{port}/airflow"
        api_port = free_port()
        # Only what a user deploying on Postgres sets; everything else from airflow_env().
        for key in [*orchestration.airflow_env(), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]:
            mp.delenv(key, raising=False)
        mp.setenv("SKEWLESS_VAR_DIR", str(base / "var"))
        mp.setenv("AIRFLOW_HOME", str(base / "airflow"))
        mp.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", conn)
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags_folder))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("DO_NOT_TRACK", "1")
        mp.setenv("AIRFLOW__API__PORT", str(api_port))
        mp.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://{HOST}:{api_port}/execution/")
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(32))
        started = time.monotonic()
        env = orchestration.prepare_airflow(settings.load())
        prepared = time.monotonic() - started
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == conn  # the user's setting won
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith("postgresql+psycopg:")
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert int(env["AIRFLOW__CORE__PARALLELISM"]) >= 2
        logs = base / "logs"
        logs.mkdir()
        servers: dict[str, subprocess.Popen] = {}
        try:
            for name, argv in SERVERS.items():
                with open(logs / f"{name}.log", "wb") as log:
                    servers[name] = subprocess.Popen(
                        [AIRFLOW, *argv],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        cwd=base,
                        start_new_session=True,
                    )
            yield {
                "port": port,
                "env": env,
                "servers": servers,
                "logs": logs,
                "record": record,
                "prepared": prepared,
            }
        finally:
            for server in servers.values():
                processes.stop_group(server)
            assert not [n for n, s in servers.items() if processes.group_alive(s.pid)]


def _tails(stack, lines: int = 30) -> str:
    out = []
    for name in SERVERS:
        text = (stack["logs"] / f"{name}.log").read_text(errors="replace").splitlines()
        out.append(f"--- {name} log (last {lines} lines) ---\n" + "\n".join(text[-lines:]))
    task_logs = Path(stack["env"]["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]) / f"dag_id={DAG_ID}"
    for path in sorted(task_logs.rglob("*.log")):
        out.append(f"--- {path.relative_to(task_logs)} (end) ---\n" + path.read_text()[-1500:])
    return "\n".join(out)


def _wait(stack, what: str, check, timeout: float):
    """Polls ``check`` until it returns something truthy; fails after ``timeout`` seconds with
    the servers' log tails."""
    deadline = time.monotonic() + timeout
    while True:
        dead = {n: s.returncode for n, s in stack["servers"].items() if s.poll() is not None}
        assert not dead, f"airflow {dead} exited while waiting for {what}\n{_tails(stack)}"
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{_tails(stack)}")
        time.sleep(0.5)


def _airflow(stack, *args: str) -> str:
    proc = subprocess.run(
        [AIRFLOW, *args], env=stack["env"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"airflow {' '.join(args)}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_local_executor_on_postgres_runs_tasks_in_parallel(stack):
    port, started = stack["port"], time.monotonic()
    _wait(
        stack,
        f"the dag-processor to store {DAG_ID} in the metadata DB",
        lambda: _query(port, "select 1 from serialized_dag where dag_id = %s", (DAG_ID,)),
        timeout=90,
    )
    _airflow(stack, "dags", "trigger", DAG_ID, "--run-id", "parallel_probe")

    def run_state():
        rows = _query(port, "select state from dag_run where dag_id = %s", (DAG_ID,))
        state = rows[0][0] if rows else None
        assert state != "failed", f"the probe run failed\n{_tails(stack)}"
        return state == "success"

    _wait(stack, f"the {DAG_ID} run to succeed", run_state, timeout=90)
    ran = time.monotonic() - started

    # The tasks' own records: three processes, all running at one moment.
    lines = [json.loads(line) for line in stack["record"].read_text().splitlines()]
    assert len(lines) == len(TASKS), lines
    assert len({line["pid"] for line in lines}) == len(TASKS)
    assert max(line["start"] for line in lines) < min(line["end"] for line in lines), lines
    # ... started by the scheduler's LocalExecutor: the scheduler is an ancestor of each
    scheduler = stack["servers"]["scheduler"].pid
    assert all(scheduler in line["ancestors"] for line in lines), (scheduler, lines)

    # Airflow's own account, read straight from the Postgres metadata DB.
    rows = _query(
        port,
        "select ti.task_id, ti.state, ti.start_date, ti.end_date, job.job_type from task_instance ti"
        " join job on job.id = ti.queued_by_job_id"
        " where ti.dag_id = %s and ti.run_id = %s order by ti.task_id",
        (DAG_ID, "parallel_probe"),
    )
    assert [r[:2] + r[4:] for r in rows] == [(t, "success", "SchedulerJob") for t in TASKS], rows
    assert max(r[2] for r in rows) < min(r[3] for r in rows), rows

    # The project's DAGs parsed by the same dag-processor, against the same metadata DB.
    project = {p.stem for p in (settings.PROJECT_ROOT / "dags").glob("*.py")}
    _wait(
        stack,
        "the dag-processor to parse the project's DAGs",
        lambda: (
            {
                Path(r[0]).stem
                for r in _query(port, "select relative_fileloc from dag where not is_stale")
            }
            >= project
        ),
        timeout=60,
    )
    errors = _query(port, "select filename, stacktrace from import_error")
    assert errors == [], errors
    print(f"prepare_airflow {stack['prepared']:.1f} s; servers up to run success {ran:.1f} s")
