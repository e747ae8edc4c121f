"""Connections to the DuckDB warehouse. DuckDB has one writer: open read-write only to write."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from skewless import schemas, settings


def connect(path: Path | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = path or settings.load().warehouse_path
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"warehouse {path} does not exist yet: run `skewless generate` or `skewless import` first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.ConnectionException as exc:
        # This process already holds the file read-write (dbt run in-process by Cosmos, as under
        # `dag.test()`): DuckDB refuses a second configuration but shares its own instance, which
        # is no second writer. Other processes are still kept out by DuckDB's file lock.
        if not read_only or "different configuration" not in str(exc):
            raise
        return _prepared(duckdb.connect(str(path)), create=False)
    return _prepared(con, create=not read_only)


def _prepared(con: duckdb.DuckDBPyConnection, *, create: bool) -> duckdb.DuckDBPyConnection:
    con.execute("SET TimeZone = 'UTC'")
    if create:
        for statement in schemas.ddl():
            con.execute(statement)
    return con


def last_event_day(path: Path | None = None) -> date:
    """The day of the latest transaction in the warehouse: the default day to score or cut off."""
    con = connect(path, read_only=True)
    try:
        (last,) = con.execute(
            f"select max(event_timestamp) from {schemas.TRANSACTIONS_TABLE}"
        ).fetchone()
    finally:
        con.close()
    if last is None:
        raise ValueError("the warehouse holds no transactions yet: run `skewless import` first")
    return last.date()
