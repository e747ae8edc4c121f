"""Apache Spark as the warehouse engine (SKEWLESS_DBT_TARGET=spark).

dbt-spark runs the same generated models in an in-process Spark session (its ``session``
method). The session here is configured as dbt_project/profiles.yml configures dbt's
(``conf``; a test holds the two equal), so what dbt builds can be loaded into and read back from
the same tables: ``SKEWLESS_SPARK_DIR`` holds them (``warehouse/``) and the embedded Hive
metastore that names them (``metastore_db/``, Derby: one process at a time).

``load_raw`` copies ``raw.transactions`` from the DuckDB warehouse into Spark, value for value,
for trying the engine on data imported with ``skewless import``. On a cluster the raw table is
the user's own and the master is the cluster's (``SKEWLESS_SPARK_MASTER``).

pyspark is imported only when a session is made: nothing else needs Java.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from skewless import schemas, settings
from skewless.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession


def conf(cfg: Settings) -> dict[str, str]:
    """The Spark configuration of the dbt profile's spark output."""
    home = str(cfg.spark_dir)
    return {
        "spark.master": settings.get("SKEWLESS_SPARK_MASTER"),
        "spark.sql.warehouse.dir": f"{home}/warehouse",
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={home}/metastore_db;create=true"
        ),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={home}",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # dbt-spark sets it so on every session (Spark 3 and 4 agree then)
        "spark.sql.ansi.enabled": "false",
    }


def schema() -> str:
    """The Spark database dbt builds into."""
    return settings.get("SKEWLESS_SPARK_SCHEMA")


def session(cfg: Settings) -> SparkSession:
    """A Spark session on the spark target's tables (created once per process)."""
    from pyspark.sql import SparkSession

    # py4j logs each closed connection at INFO, also while the interpreter shuts down
    logging.getLogger("py4j").setLevel(logging.WARNING)
    cfg.spark_dir.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName("skewless").enableHiveSupport()
    for key, value in conf(cfg).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def load_raw(cfg: Settings, spark: SparkSession | None = None) -> int:
    """Replaces Spark's raw.transactions with the DuckDB warehouse's, value for value (through
    a Parquet file under SKEWLESS_SPARK_DIR); returns the number of rows."""
    from skewless import warehouse

    spark = spark or session(cfg)
    cfg.spark_dir.mkdir(parents=True, exist_ok=True)
    export = Path(cfg.spark_dir) / "raw_transactions.parquet"
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        con.execute(
            f"copy (select * from {schemas.TRANSACTIONS_TABLE}) to '{export}' (format parquet)"
        )
    finally:
        con.close()
    spark.sql(f"create database if not exists {schemas.RAW_SCHEMA}")
    frame = spark.read.parquet(str(export))
    # DuckDB's timestamps have no time zone: Spark reads them as timestamp_ntz; the models
    # cast them to timestamp in the session's zone (UTC), which keeps every value.
    frame.write.mode("overwrite").saveAsTable(schemas.TRANSACTIONS_TABLE)
    return spark.table(schemas.TRANSACTIONS_TABLE).count()
