"""The dbt models run unchanged on a second engine, PostgreSQL, and compute the same values.

A private PostgreSQL server (Debian's `postgresql` package) runs on loopback for this module. The
same raw transactions (simulated, plus hand-made window edges and ties) go into the DuckDB
warehouse and into Postgres; `dbt build` of the staging, feature and training models runs on both
targets (the profile's `duckdb` and `postgres` outputs, picked by SKEWLESS_DBT_TARGET); every
column of every row must agree: integers, timestamps and booleans exactly, floats to 1e-9
relative (the skew report's tolerance).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from skewless import importer, pipeline, settings
from tests.engines import MODELS, SELECT, assert_same_table, duckdb_tables, raw_transactions
from tests.postgres import connect, copy_raw_transactions, private_postgres, settings_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL server on loopback (tests/postgres.py) with the database `skewless`;
    yields its settings."""
    with private_postgres(databases=("skewless",)) as port:
        yield settings_for(port)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return raw_transactions(tmp_path_factory.mktemp("raw") / "transactions.parquet")


def _read_postgres(pg: dict, table: str) -> tuple[list[str], list[tuple]]:
    con = connect(pg)
    with con.cursor() as cur:
        cur.execute(f"select * from public.{table}")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    con.close()
    return names, rows


@pytest.fixture(scope="module")
def built(raw, postgres, tmp_path_factory):
    """The same raw rows built by dbt on DuckDB and on Postgres; both tables per model."""
    var_dir = tmp_path_factory.mktemp("pg") / "var"
    timings = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKEWLESS_VAR_DIR", str(var_dir))
        for name in ("SKEWLESS_WAREHOUSE", "SKEWLESS_FEATURE_DIR", "SKEWLESS_FEAST_REGISTRY"):
            mp.delenv(name, raising=False)
        cfg = settings.load()
        loaded = importer.import_transactions(raw)["rows_loaded"]
        assert copy_raw_transactions(cfg.warehouse_path, postgres) == loaded
        for target in ("duckdb", "postgres"):
            mp.setenv("SKEWLESS_DBT_TARGET", target)
            for key, value in postgres.items():
                mp.setenv(key, value)
            started = time.perf_counter()
            pipeline.dbt(settings.load(), ["build", "--select", *SELECT])  # the target now
            timings[target] = round(time.perf_counter() - started, 1)
        duck = duckdb_tables(cfg.warehouse_path)
        tables = {m: (duck[m], _read_postgres(postgres, m)) for m in MODELS}
    print(f"dbt build seconds: {timings}; raw rows: {loaded}")
    return tables


@pytest.mark.parametrize("model", list(MODELS))
def test_postgres_computes_the_same_values_as_duckdb(built, model):
    assert_same_table(model, *built[model], "postgres")


def test_the_edge_cases_reached_the_features(built):
    (names, rows), _ = built["customer_transaction_windows"]
    edge = {r[names.index("transaction_id")]: dict(zip(names, r, strict=True)) for r in rows}
    # an event exactly 1h before is in the window; a tie at t is not
    assert edge["edge_c_1"]["customer_tx_count_1h"] == 1
    assert edge["edge_c_2"]["customer_tx_count_1h"] == 1
    # 1h 5min - 1 us after them, the window's tail is aligned back to them; at 1h 5min it is not
    assert edge["edge_c_3"]["customer_tx_count_1h"] == 2
    assert edge["edge_c_4"]["customer_tx_count_1h"] == 1
    (names, rows), _ = built["merchant_transaction_windows"]
    edge = {r[names.index("transaction_id")]: dict(zip(names, r, strict=True)) for r in rows}
    # the label-delay shift: edge_m_0 is exactly 7 days before edge_m_7 (out), and stays out until
    # the next hour starts (edge_m_9: in, and its label is known)
    assert edge["edge_m_7"]["merchant_fraud_risk_1d"] is None
    assert edge["edge_m_8"]["merchant_fraud_risk_1d"] is None
    assert edge["edge_m_9"]["merchant_fraud_risk_1d"] == 1.0
