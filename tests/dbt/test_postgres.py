"""The dbt models run unchanged on a second engine, PostgreSQL, and compute the same values.

A private PostgreSQL server (Debian's `postgresql` package) runs on loopback for this module. The
same raw transactions (simulated, plus hand-made window edges and ties) go into the DuckDB
warehouse and into Postgres; `dbt build` of the staging, feature and training models runs on both
targets (the profile's `duckdb` and `postgres` outputs, picked by SKEWLESS_DBT_TARGET); every
column of every row must agree: integers, timestamps and booleans exactly, floats to 1e-9
relative (the skew report's tolerance).
"""

from __future__ import annotations

import math
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from skewless import importer, pipeline, settings, simulate, warehouse
from tests.postgres import connect, copy_raw_transactions, private_postgres, settings_for

pytestmark = pytest.mark.slow

# The models compared: staging, the generated features, the training sets, their arrival-aware
# forms.
MODELS = {
    "stg_raw__transactions": ["transaction_id"],
    "customer_transaction_windows": ["customer_id", "transaction_id"],
    "merchant_transaction_windows": ["merchant_id", "transaction_id"],
    "customer_daily_activity": ["customer_id", "event_timestamp"],
    "fraud_training_set": ["transaction_id"],
    "churn_training_set": ["customer_id", "event_timestamp"],
    # arrival-aware (skewless/dbtgen_arrival.py)
    "customer_transaction_windows_as_arrived": ["customer_id", "transaction_id"],
    "merchant_transaction_windows_as_arrived": ["merchant_id", "transaction_id"],
    "fraud_training_set_as_arrived": ["transaction_id"],
}
SELECT = ["path:models/staging", "path:models/marts"]


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL server on loopback (tests/postgres.py) with the database `skewless`;
    yields its settings."""
    with private_postgres(databases=("skewless",)) as port:
        yield settings_for(port)


def _edge_cases(day: datetime) -> pd.DataFrame:
    """Hand-made events on the window edges, starting at ``day``."""
    rows = []

    def add(tx, customer, merchant, at, *, fraud=0, label=None, amount=10.0):
        rows.append(
            {
                "transaction_id": tx,
                "event_timestamp": at,
                "customer_id": customer,
                "merchant_id": merchant,
                "amount": amount,
                "is_fraud": fraud,
                "arrival_timestamp": at,
                "label_timestamp": label,
            }
        )

    h, us, hop = timedelta(hours=1), timedelta(microseconds=1), timedelta(minutes=5)
    # one customer: exact 1h / 1d / 7d / 30d edges, ties, the 1h window's aligned tail (5-minute
    # hop) a microsecond before and at the next hop
    for i, offset in enumerate(
        [
            0 * h,
            h,
            h,
            2 * h + hop - us,
            2 * h + hop,
            25 * h,
            25 * h,
            7 * 24 * h + h,
            30 * 24 * h + h,
            30 * 24 * h + h + us,
        ]
    ):
        add(f"edge_c_{i}", "edge_c1", f"edge_m{i % 3}", day + offset, amount=1.0 + i)
    # one merchant: labels known exactly at a later event, an hour after it, never (null),
    # and after the event left the window
    add("edge_m_0", "edge_c2", "edge_m9", day, fraud=1, label=day + 2 * h)
    add("edge_m_1", "edge_c3", "edge_m9", day + 2 * h, fraud=0, label=day + 3 * h)
    add("edge_m_2", "edge_c4", "edge_m9", day + 2 * h, fraud=1, label=day + 2 * h)
    add("edge_m_3", "edge_c5", "edge_m9", day + 26 * h, fraud=None)
    add("edge_m_4", "edge_c6", "edge_m9", day + 27 * h, fraud=1, label=day + 40 * 24 * h)
    add("edge_m_5", "edge_c7", "edge_m9", day + 8 * 24 * h, fraud=0, label=day + 8 * 24 * h)
    add("edge_m_6", "edge_c7", "edge_m9", day + 8 * 24 * h + 2 * h, fraud=0)
    # fraud risk windows end at floor(t - 7 days, 1 hour): edge_m_0 is out exactly 7 days later and
    # a microsecond before the next hour, in at the next hour
    add("edge_m_7", "edge_c8", "edge_m9", day + 7 * 24 * h, fraud=None)
    add("edge_m_8", "edge_c8", "edge_m9", day + 7 * 24 * h + h - us, fraud=None)
    add("edge_m_9", "edge_c8", "edge_m9", day + 7 * 24 * h + h, fraud=None)
    frame = pd.DataFrame(rows)
    frame["is_fraud"] = frame["is_fraud"].astype("Int8")
    return frame


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """~400 customers x 40 days, 100 terminals, and the edge cases, as one Parquet file."""
    first_day = date(2025, 3, 1)
    frame = simulate.generate(
        customers=400, days=40, seed=11, start=first_day, tx_per_day=1.0, terminals=100
    )
    frame["is_fraud"] = frame["is_fraud"].astype("Int8")
    frame = pd.concat([frame, _edge_cases(datetime(2025, 3, 5))], ignore_index=True)
    return simulate.write(frame, tmp_path_factory.mktemp("raw") / "transactions.parquet")


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
        con = warehouse.connect(cfg.warehouse_path, read_only=True)
        tables = {}
        for model in MODELS:
            cursor = con.execute(f"select * from main.{model}")
            duck = ([d[0] for d in cursor.description], cursor.fetchall())
            tables[model] = (duck, _read_postgres(postgres, model))
        con.close()
    print(f"dbt build seconds: {timings}; raw rows: {loaded}")
    return tables


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b  # ints, strings, timestamps: exactly


def differences(model: str, duck, pg) -> list[str]:
    """Every value of ``model`` that differs between the DuckDB and the Postgres table."""
    (duck_names, duck_rows), (pg_names, pg_rows) = duck, pg
    if duck_names != pg_names:
        return [f"{model}: columns differ: duckdb {duck_names} postgres {pg_names}"]
    keys = [duck_names.index(k) for k in MODELS[model]]

    def by_key(rows):
        return {tuple(row[i] for i in keys): row for row in rows}

    duck_by, pg_by = by_key(duck_rows), by_key(pg_rows)
    out = []
    if len(duck_by) != len(duck_rows) or len(pg_by) != len(pg_rows):
        out.append(f"{model}: key {MODELS[model]} is not unique")
    for key in sorted(duck_by.keys() ^ pg_by.keys(), key=str)[:10]:
        out.append(f"{model} {key}: only in {'duckdb' if key in duck_by else 'postgres'}")
    for key in duck_by.keys() & pg_by.keys():
        for name, a, b in zip(duck_names, duck_by[key], pg_by[key], strict=True):
            if not _same(a, b):
                out.append(f"{model} {key} {name}: duckdb={a!r} postgres={b!r}")
    return out


@pytest.mark.parametrize("model", list(MODELS))
def test_postgres_computes_the_same_values_as_duckdb(built, model):
    duck, pg = built[model]
    assert len(duck[1]) > 0
    bad = differences(model, duck, pg)
    assert bad == [], f"{len(bad)} differences, first: {bad[:20]}"
    print(f"{model}: {len(duck[1])} rows x {len(duck[0])} columns equal")


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
