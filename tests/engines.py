"""What the engine comparisons share (tests/dbt/test_postgres.py, test_spark.py and
test_feast_offline_store.py): the raw transactions built on each engine, with hand-made window
edges and ties, the models compared, and a value-for-value comparison: integers, timestamps and
booleans exactly, floats to 1e-9 relative (the skew report's tolerance)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from skewless import simulate

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


def edge_cases(day: datetime) -> pd.DataFrame:
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


def raw_transactions(path: Path) -> Path:
    """~400 customers x 40 days, 100 terminals, and the edge cases, as one Parquet file."""
    first_day = date(2025, 3, 1)
    frame = simulate.generate(
        customers=400, days=40, seed=11, start=first_day, tx_per_day=1.0, terminals=100
    )
    frame["is_fraud"] = frame["is_fraud"].astype("Int8")
    frame = pd.concat([frame, edge_cases(datetime(2025, 3, 5))], ignore_index=True)
    return simulate.write(frame, path)


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b  # ints, strings, timestamps: exactly


def differences(model: str, duck, other, engine: str) -> list[str]:
    """Every value of ``model`` that differs between the DuckDB table and ``engine``'s; each
    table is (column names, rows)."""
    (duck_names, duck_rows), (pg_names, pg_rows) = duck, other
    if duck_names != pg_names:
        return [f"{model}: columns differ: duckdb {duck_names} {engine} {pg_names}"]
    keys = [duck_names.index(k) for k in MODELS[model]]

    def by_key(rows):
        return {tuple(row[i] for i in keys): row for row in rows}

    duck_by, pg_by = by_key(duck_rows), by_key(pg_rows)
    out = []
    if len(duck_by) != len(duck_rows) or len(pg_by) != len(pg_rows):
        out.append(f"{model}: key {MODELS[model]} is not unique")
    for key in sorted(duck_by.keys() ^ pg_by.keys(), key=str)[:10]:
        out.append(f"{model} {key}: only in {'duckdb' if key in duck_by else engine}")
    for key in duck_by.keys() & pg_by.keys():
        for name, a, b in zip(duck_names, duck_by[key], pg_by[key], strict=True):
            if not same(a, b):
                out.append(f"{model} {key} {name}: duckdb={a!r} {engine}={b!r}")
    return out


# --- Feast retrieval over fraud_v1, as frames ------------------------------------------------


def fraud_features() -> dict[str, str]:
    """Feature name -> declared dtype (int64 / float64) of the fraud_v1 service."""
    from skewless.features import FEATURE_SERVICES

    (service,) = [s for s in FEATURE_SERVICES if s.name == "fraud_v1"]
    return {f.name: f.dtype for g in service.groups for f in g.features}


def by_transaction(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per transaction_id. Feast's PostgreSQL point-in-time query repeats an entity row
    once per feature row that ties at its latest timestamp (transactions at the same instant);
    those copies are identical, so exact duplicates are dropped first, and nothing else may
    repeat."""
    unique = frame.drop_duplicates()
    assert unique["transaction_id"].is_unique, "different features for one transaction"
    return unique.set_index("transaction_id").sort_index()


def frame_differences(expected: pd.DataFrame, actual: pd.DataFrame, what: str) -> list[str]:
    """Every fraud_v1 feature value that differs: integers exactly, floats to 1e-9 relative,
    missing only where missing."""
    expected, actual = by_transaction(expected), by_transaction(actual)
    out = [f"{what}: transactions differ"] if not expected.index.equals(actual.index) else []
    for name, dtype in fraud_features().items():
        for tx, a, b in zip(expected.index, expected[name], actual[name], strict=True):
            a_missing, b_missing = pd.isna(a), pd.isna(b)
            if a_missing or b_missing:
                ok = a_missing and b_missing
            elif dtype == "int64":
                ok = float(a).is_integer() and float(b).is_integer() and int(a) == int(b)
            else:
                ok = math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
            if not ok:
                out.append(f"{what} {tx} {name}: {a!r} != {b!r}")
    return out


def duckdb_tables(warehouse_path: Path) -> dict[str, tuple[list[str], list[tuple]]]:
    """(column names, rows) of each compared model in the DuckDB warehouse."""
    from skewless import warehouse

    con = warehouse.connect(warehouse_path, read_only=True)
    try:
        tables = {}
        for model in MODELS:
            cursor = con.execute(f"select * from main.{model}")
            tables[model] = ([d[0] for d in cursor.description], cursor.fetchall())
        return tables
    finally:
        con.close()


def assert_same_table(model: str, duck, other, engine: str) -> None:
    assert len(duck[1]) > 0
    bad = differences(model, duck, other, engine)
    assert bad == [], f"{len(bad)} differences, first: {bad[:20]}"
    print(f"{model}: {len(duck[1])} rows x {len(duck[0])} columns equal")


def assert_same_retrieval(duck: pd.DataFrame, other: pd.DataFrame, rows: int, engine: str) -> None:
    """Feast's retrieval of fraud_v1 through ``engine``'s offline store equals the embedded
    one's, for all ``rows`` transactions."""
    assert len(by_transaction(duck)) == rows > 1000
    assert set(other.columns) == set(duck.columns)
    bad = frame_differences(duck, other, f"duckdb vs {engine}")
    assert bad == [], f"{len(bad)} differences, first: {bad[:20]}"
    values = len(duck) * len(fraud_features())
    print(f"{len(duck)} transactions x {len(fraud_features())} features = {values} values equal")


# the feature_store file of each offline store, and the source type it declares
STORE_FILES = {
    "duckdb": ("feature_store.yaml", "FileSource"),
    "postgres": ("feature_store.postgres.yaml", "PostgreSQLSource"),
    "spark": ("feature_store.spark.yaml", "SparkSource"),
}


def use_store(mp, base: Path, store: str) -> None:
    """Selects one offline store's feature_store file (Feast's FEAST_FS_YAML_FILE_PATH) and a
    registry of its own under ``base``."""
    from skewless.settings import PROJECT_ROOT

    path = PROJECT_ROOT / "feature_repo" / STORE_FILES[store][0]
    mp.setenv("FEAST_FS_YAML_FILE_PATH", str(path))
    mp.setenv("SKEWLESS_FEAST_REGISTRY", str(base / f"registry-{store}.db"))


def fraud_training_set(warehouse_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The dbt fraud_training_set and its entity rows as Feast takes them (UTC times)."""
    from skewless import warehouse

    con = warehouse.connect(warehouse_path, read_only=True)
    try:
        training = con.execute("select * from fraud_training_set").fetchdf()
    finally:
        con.close()
    entity_df = training[["transaction_id", "customer_id", "merchant_id", "event_timestamp"]].copy()
    entity_df["event_timestamp"] = entity_df["event_timestamp"].dt.tz_localize("UTC")
    return training, entity_df


def retrieve_fraud_v1(cfg, redis_url: str, store: str, entity_df: pd.DataFrame) -> pd.DataFrame:
    """get_historical_features(fraud_v1) through the selected feature_store file, whose sources
    must be of the store's type."""
    from skewless import pipeline

    feature_store = pipeline.feature_store(cfg, redis_url)
    source = feature_store.get_data_source("customer_transaction_windows_source")
    assert type(source).__name__ == STORE_FILES[store][1]
    return feature_store.get_historical_features(
        entity_df=entity_df, features=feature_store.get_feature_service("fraud_v1")
    ).to_df()
