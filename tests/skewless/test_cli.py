"""The `skewless` command as a user runs it: a real subprocess, JSON on stdout, errors on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skewless import schemas, warehouse
from tests.skewless.test_importer import CSV_ROWS, _write_csv

SKEWLESS = str(Path(sys.executable).parent / "skewless")


def run(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([SKEWLESS, *args], capture_output=True, text=True, env=env, timeout=120)


def test_import_with_map_prints_a_reconciled_summary(var_dir, tmp_path):
    path = _write_csv(tmp_path / "bank_export.csv")
    maps = [
        "transaction_id=TX_ID",
        "event_timestamp=TX_DATETIME",
        "customer_id=CUSTOMER_ID",
        "merchant_id=TERMINAL_ID",
        "amount=TX_AMOUNT",
        "is_fraud=TX_FRAUD",
    ]
    proc = run("import", "transactions", str(path), *[a for m in maps for a in ("--map", m)])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows_read"] == len(CSV_ROWS)
    assert summary["rows_loaded"] == sum(1 for _, reason in CSV_ROWS if reason is None)
    assert summary["rows_read"] == summary["rows_loaded"] + summary["rows_quarantined"]


def test_import_names_the_missing_column_and_shows_the_map_syntax(var_dir, tmp_path):
    path = _write_csv(tmp_path / "bank_export.csv")
    proc = run("import", "transactions", str(path), "--map", "transaction_id=TX_ID")
    assert proc.returncode == 2
    assert "event_timestamp" in proc.stderr
    assert "--map canonical=source" in proc.stderr
    assert proc.stdout == ""
    if (var_dir / "warehouse.duckdb").exists():  # nothing half-written
        con = warehouse.connect(var_dir / "warehouse.duckdb", read_only=True)
        counts = [
            con.execute(f"select count(*) from {t}").fetchone()[0]
            for t in (schemas.TRANSACTIONS_TABLE, schemas.QUARANTINE_TABLE)
        ]
        con.close()
        assert counts == [0, 0]


def test_generate_writes_and_imports(var_dir):
    proc = run("generate", "--customers", "50", "--days", "10", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows"] == summary["import"]["rows_loaded"] > 0
    assert Path(summary["file"]).exists()


def test_bad_setting_names_the_variable(var_dir):
    proc = run("config", env_extra={"SKEWLESS_LABEL_DELAY_DAYS": "a week"})
    assert proc.returncode == 2
    assert "SKEWLESS_LABEL_DELAY_DAYS" in proc.stderr


def test_redis_start_status_stop(var_dir):
    env = {"REDIS_URL": ""}
    assert run("redis", "status", env_extra=env).returncode == 1
    started = run("redis", "start", env_extra=env)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith("redis://127.0.0.1:")
        status = run("redis", "status", env_extra=env)
        assert status.returncode == 0 and status.stdout == started.stdout
    finally:
        assert run("redis", "stop", env_extra=env).stdout.strip() == "stopped"
    assert run("redis", "status", env_extra=env).returncode == 1


@pytest.mark.parametrize("args", [["dbtgen", "--check"], ["config"]])
def test_small_commands_succeed(var_dir, args):
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
