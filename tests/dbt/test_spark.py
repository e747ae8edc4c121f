"""The dbt models run unchanged on Apache Spark and compute the same values as on DuckDB; Feast's
Spark offline store serves them as DuckDB's does.

The same raw transactions (simulated, plus hand-made window edges and ties: tests/engines.py) go
into the DuckDB warehouse and, by `skewless spark-load`, into Spark's raw.transactions. `dbt
build` of the staging, feature and training models runs on both targets (the profile's `duckdb`
output and its `spark` output: dbt-spark's in-process session on local[2]), and every column of
every row must agree: integers, timestamps and booleans exactly, floats to 1e-9 relative.

Then Feast, with feature_store.spark.yaml (SparkSource over the dbt tables): point-in-time
retrieval of fraud_v1 for every transaction of the fraud training set equals the retrieval from
the embedded offline store (dbt's Parquet exports) and the training set itself; materialization
from Spark into Redis writes the same keys, fields and values as materialization from DuckDB.

Spark's embedded Hive metastore (Derby) admits one process at a time: `spark-load`, the dbt runs
and `feast apply` are subprocesses that end before this process opens its own session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from datetime import time as clock

import pytest
import redis

from skewless import feast_layout, importer, pipeline, settings, spark, warehouse
from tests.engines import (
    MODELS,
    assert_same_retrieval,
    assert_same_table,
    differences,
    duckdb_tables,
    frame_differences,
    fraud_features,
    fraud_training_set,
    raw_transactions,
    retrieve_fraud_v1,
    same,
    use_store,
)
from tests.helpers import PLACEMENT_VARS

STORES = ("duckdb", "spark")

pytestmark = pytest.mark.slow


def read_spark(session, table: str) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of a Spark table, timestamps as UTC wall-clock times (as DuckDB
    returns them) whatever this process's time zone."""
    from pyspark.sql import functions as fn
    from pyspark.sql.types import TimestampType

    frame = session.table(table)
    columns = [
        fn.col(f.name).cast("timestamp_ntz").alias(f.name)
        if isinstance(f.dataType, TimestampType)
        else fn.col(f.name)
        for f in frame.schema.fields
    ]
    return frame.columns, [tuple(row) for row in frame.select(*columns).collect()]


@pytest.fixture(scope="module")
def spark_env(tmp_path_factory, redis_db):
    """A var dir of its own with the raw rows in DuckDB and in Spark, dbt built on both targets
    and `feast apply` with both feature_store files; yields (settings, the base directory, the
    monkeypatch, {step: seconds}) with the environment set."""
    base = tmp_path_factory.mktemp("spark")
    raw = raw_transactions(base / "raw" / "transactions.parquet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKEWLESS_VAR_DIR", str(base / "var"))
        for name in (*PLACEMENT_VARS, "FEAST_FS_YAML_FILE_PATH"):
            mp.delenv(name, raising=False)
        cfg = settings.load()
        loaded = importer.import_transactions(raw)["rows_loaded"]
        timings = {}
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "skewless.cli", "spark-load"],
            capture_output=True,
            text=True,
            check=True,
        )
        timings["spark-load"] = round(time.perf_counter() - started, 1)
        assert json.loads(out.stdout)["rows"] == loaded
        for target in ("duckdb", "spark"):
            mp.setenv("SKEWLESS_DBT_TARGET", target)
            started = time.perf_counter()
            pipeline.dbt(settings.load(), ["build"])  # DuckDB's Parquet exports too
            timings[target] = round(time.perf_counter() - started, 1)
        mp.delenv("SKEWLESS_DBT_TARGET")
        for store in STORES:
            use_store(mp, base, store)
            started = time.perf_counter()
            pipeline.feast_apply(settings.load(), redis_db)
            timings[f"feast apply {store}"] = round(time.perf_counter() - started, 1)
        print(f"seconds: {timings}; raw rows: {loaded}")
        yield cfg, base, mp, timings
    from pyspark.sql import SparkSession

    if (active := SparkSession.getActiveSession()) is not None:
        active.stop()


@pytest.fixture(scope="module")
def built(spark_env):
    """Both tables per model: DuckDB's and Spark's."""
    cfg = spark_env[0]
    session = spark.session(cfg)
    duck = duckdb_tables(cfg.warehouse_path)
    return {m: (duck[m], read_spark(session, f"{spark.schema()}.{m}")) for m in MODELS}


@pytest.mark.parametrize("model", list(MODELS))
def test_spark_computes_the_same_values_as_duckdb(built, model):
    assert_same_table(model, *built[model], "spark")


@pytest.mark.parametrize(
    "column, change",
    [
        ("customer_amount_sum_7d", lambda v: v * (1 + 1e-6)),
        ("customer_tx_count_1d", lambda v: v + 1),
    ],
)
def test_a_planted_difference_is_found(built, column, change):
    model = "customer_transaction_windows"
    (names, rows), other = built[model]
    at = names.index(column)
    index = next(i for i, row in enumerate(rows) if row[at])
    planted = list(rows)
    planted[index] = (*rows[index][:at], change(rows[index][at]), *rows[index][at + 1 :])
    bad = differences(model, (names, planted), other, "spark")
    assert len(bad) == 1 and column in bad[0]


def test_the_spark_profile_is_the_sessions_configuration(spark_env):
    """dbt's session (profiles.yml) and skewless.spark's open the same tables the same way."""
    import jinja2
    import yaml

    cfg = spark_env[0]
    text = (cfg.dbt_profiles_dir / "profiles.yml").read_text()
    env = pipeline.dbt_environment(cfg)
    jinja = jinja2.Environment()
    jinja.filters["as_number"] = lambda value: value  # dbt's filter, used by the postgres output
    rendered = jinja.from_string(text).render(
        env_var=lambda name, default="": env.get(name, default)
    )
    output = yaml.safe_load(rendered)["skewless"]["outputs"]["spark"]
    profile = {k: str(v) for k, v in output["server_side_parameters"].items()}
    profile["spark.sql.ansi.enabled"] = "false"  # dbt-spark adds it to every session
    assert profile == spark.conf(cfg)
    assert output["schema"] == spark.schema()


# --- Feast's Spark offline store ------------------------------------------------------------


@pytest.fixture(scope="module")
def retrieved(spark_env, built, redis_db):
    """The dbt fraud_training_set (DuckDB) and get_historical_features(fraud_v1) for its
    transactions through each feature_store file."""
    cfg, base, mp, timings = spark_env
    training, entity_df = fraud_training_set(cfg.warehouse_path)
    frames = {}
    for store in STORES:
        use_store(mp, base, store)
        started = time.perf_counter()
        frames[store] = retrieve_fraud_v1(settings.load(), redis_db, store, entity_df)
        timings[f"retrieval {store}"] = round(time.perf_counter() - started, 1)
    print(f"seconds: {timings}; entity rows: {len(entity_df)}")
    return {"training": training, **frames}


def test_spark_retrieval_equals_duckdb_retrieval(retrieved):
    duck, rows = retrieved["duckdb"], len(retrieved["training"])
    assert_same_retrieval(duck, retrieved["spark"], rows, "spark")


def test_spark_retrieval_reproduces_the_fraud_training_set(retrieved):
    training = retrieved["training"][list(fraud_features()) + ["transaction_id"]]
    bad = frame_differences(training, retrieved["spark"][training.columns], "training vs spark")
    assert bad == [], f"{len(bad)} differences, first: {bad[:20]}"


def _online_rows(url: str) -> dict[bytes, dict[bytes, object]]:
    """Every Redis hash Feast wrote, its fields decoded (values and event timestamps)."""
    client = redis.Redis.from_url(url)
    try:
        return {
            key: {
                field: feast_layout.decode_timestamp(data)
                if field.startswith(b"_ts:")
                else feast_layout.decode_value(data)
                for field, data in client.hgetall(key).items()
            }
            for key in client.scan_iter(count=1000)
        }
    finally:
        client.close()


def test_materialization_from_spark_writes_what_duckdb_materialization_writes(
    spark_env, built, redis_db
):
    cfg, base, mp, timings = spark_env
    end = datetime.combine(warehouse.last_event_day(cfg.warehouse_path), clock()) + timedelta(1)
    rows, summaries = {}, {}
    for store_type in STORES:
        use_store(mp, base, store_type)
        client = redis.Redis.from_url(redis_db)
        client.flushdb()
        client.close()
        started = time.perf_counter()
        summaries[store_type] = pipeline.materialize(settings.load(), end=end, redis_url=redis_db)
        timings[f"materialize {store_type}"] = round(time.perf_counter() - started, 1)
        rows[store_type] = _online_rows(redis_db)
    duck, other = rows["duckdb"], rows["spark"]
    assert len(duck) > 200 and other.keys() == duck.keys()
    bad = [
        (key, field, value, other[key].get(field))
        for key, fields in duck.items()
        for field, value in fields.items()
        if other[key].keys() != fields.keys() or not same(value, other[key][field])
    ]
    assert bad == [], f"{len(bad)} differences, first: {bad[:10]}"
    values = sum(len(fields) for fields in duck.values())
    print(f"seconds: {timings}; {len(duck)} keys, {values} fields equal; {summaries['spark']}")
