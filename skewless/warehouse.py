"""Connections to the DuckDB warehouse. DuckDB has one writer: open read-write only to write."""

from __future__ import annotations

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
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        for statement in schemas.ddl():
            con.execute(statement)
    return con
