"""A private PostgreSQL server for tests: loopback, a free port, its own process group.

Debian's `postgresql` package provides the binaries (.ci/run installs it). PostgreSQL refuses to
run as root: under root, the data folder belongs to `nobody` and the server runs as that user
(setpriv). Authentication is `trust` for the user ``USER``, on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) not found. Install Debian's package: "
    "`apt-get install -y --no-install-recommends postgresql` (.ci/run does this), or put its "
    "bin directory (pg_config --bindir) on PATH."
)
HOST = "127.0.0.1"
USER = "skewless"


def bin_dir() -> Path | None:
    """Where initdb and postgres are: PATH, pg_config --bindir, else Debian's versioned folders."""
    candidates = [str(Path(found).parent) for found in [shutil.which("initdb")] if found]
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    for folder in candidates:
        if folder and all((Path(folder) / b).is_file() for b in ("initdb", "postgres")):
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def private_postgres(databases: tuple[str, ...] = ()) -> Iterator[int]:
    """Starts a server, creates ``databases``, yields its port; stops the whole process group
    (fast shutdown, SIGKILL after 20 s) and removes its data folder on exit."""
    found = bin_dir()
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="skewless-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}"]
        as_user += ["--clear-groups", "--"]
    data, port = base / "data", free_port()
    subprocess.run(
        [*as_user, found / "initdb", "-D", data, "-U", USER, "--auth=trust"]
        + ["--encoding=UTF8", "--no-locale", "--no-sync"],
        check=True,
        capture_output=True,
        cwd=base,
    )
    log = open(base / "server.log", "wb")  # noqa: SIM115 - open while the server runs
    server = subprocess.Popen(
        [*as_user, found / "postgres", "-D", data, "-h", HOST, "-p", str(port)]
        + ["-k", str(base), "-c", "fsync=off", "-c", "synchronous_commit=off"]
        + ["-c", "full_page_writes=off", "-c", "TimeZone=UTC"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=base,
        start_new_session=True,
    )
    import psycopg2

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                con = psycopg2.connect(host=HOST, port=port, user=USER, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((base / "server.log").read_text()) from None
                time.sleep(0.2)
        con.autocommit = True
        for name in databases:
            con.cursor().execute(f"create database {name}")
        con.close()
        yield port
    finally:
        os.killpg(server.pid, signal.SIGINT)  # fast shutdown of the whole group
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def settings_for(port: int, dbname: str = "skewless", schema: str = "public") -> dict[str, str]:
    """The SKEWLESS_PG_* variables (dbt profile, feature_store.postgres.yaml) of a private
    server started by private_postgres."""
    return {
        "SKEWLESS_PG_HOST": HOST,
        "SKEWLESS_PG_PORT": str(port),
        "SKEWLESS_PG_USER": USER,
        "SKEWLESS_PG_PASSWORD": "",
        "SKEWLESS_PG_DBNAME": dbname,
        "SKEWLESS_PG_SCHEMA": schema,
    }


def connect(pg: dict[str, str]):
    """A psycopg2 connection for the SKEWLESS_PG_* settings ``pg``."""
    import psycopg2

    return psycopg2.connect(
        host=pg["SKEWLESS_PG_HOST"],
        port=int(pg["SKEWLESS_PG_PORT"]),
        user=pg["SKEWLESS_PG_USER"],
        dbname=pg["SKEWLESS_PG_DBNAME"],
    )


PG_TYPES = {"TINYINT": "smallint", "DOUBLE": "double precision"}


def copy_raw_transactions(duck_path: Path, pg: dict[str, str]) -> int:
    """Copies raw.transactions from the DuckDB warehouse at ``duck_path`` into Postgres (same
    schema and table), value for value; returns the number of rows."""
    from psycopg2.extras import execute_values

    from skewless import schemas, warehouse

    con = warehouse.connect(duck_path, read_only=True)
    names = list(schemas.RAW_TRANSACTION_COLUMNS) + ["source_file", "loaded_at"]
    rows = con.execute(f"select {', '.join(names)} from {schemas.TRANSACTIONS_TABLE}").fetchall()
    con.close()
    typed = [f"{n} {PG_TYPES.get(t, t)}" for n, t in schemas.RAW_TRANSACTION_COLUMNS.items()] + [
        "source_file varchar",
        "loaded_at timestamp",
    ]
    pg_con = connect(pg)
    with pg_con, pg_con.cursor() as cur:
        cur.execute(f"create schema if not exists {schemas.RAW_SCHEMA}")
        cur.execute(f"create table {schemas.TRANSACTIONS_TABLE} ({', '.join(typed)})")
        execute_values(
            cur, f"insert into {schemas.TRANSACTIONS_TABLE} ({', '.join(names)}) values %s", rows
        )
    pg_con.close()
    return len(rows)
