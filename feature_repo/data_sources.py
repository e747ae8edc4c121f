"""Offline sources, one per feature group; and a push source per group of the fraud service, fed by
the stream consumer (serving/stream_consumer.py).

The offline store of the selected feature_store.yaml picks the source type:
- duckdb (feature_store.yaml, the default): the Parquet files dbt exports (models/exports). Feast
  never opens the DuckDB warehouse: it has one writer, and dbt is it.
- postgres (feature_store.postgres.yaml): the dbt feature tables themselves, in the schema
  SKEWLESS_PG_SCHEMA, read through a query that does what the export models do (event_timestamp
  as timestamptz, UTC), so the feature values are the same.
- spark (feature_store.spark.yaml): the dbt feature tables themselves, in the Spark database
  SKEWLESS_SPARK_SCHEMA (a Spark timestamp is an instant already).
"""

import os
from pathlib import Path

import click
from feast import FileSource, PushSource
from feast.data_format import ParquetFormat

from skewless import feast_layout, settings
from skewless.features import GROUPS, FeatureGroup, Grain
from skewless.stream import STREAM, push_source_name, streamed_groups

REPO = Path(__file__).resolve().parent


def offline_store_type() -> str:
    """The offline store type of the feature_store.yaml Feast loaded for this repo: the CLI's
    --feature-store-yaml when `feast` runs (click context), else FEAST_FS_YAML_FILE_PATH, else
    feature_store.yaml (Feast's own resolution, feast.utils.get_default_yaml_file_path)."""
    ctx = click.get_current_context(silent=True)
    chosen = ctx.obj.get("FS_YAML_FILE") if ctx is not None and isinstance(ctx.obj, dict) else None
    return feast_layout.offline_store_type(REPO, chosen)


def _file_source(group: FeatureGroup) -> FileSource:
    return FileSource(
        name=f"{group.name}_source",
        path=str(settings.load().feature_export_dir / f"feast_{group.name}.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        description=f"dbt export of {group.name}: {group.description}",
        owner="ml-platform@skewless.dev",
        tags={"dbt_model": f"feast_{group.name}", "grain": group.grain.value},
    )


def postgres_query(group: FeatureGroup, schema: str) -> str:
    """The dbt table of ``group`` as its Parquet export has it: the same columns, event_timestamp
    (a UTC `timestamp` in the table) as timestamptz, like the export's `::timestamptz`."""
    columns = [
        f'"{group.entity.join_key}"',
        "event_timestamp at time zone 'UTC' as event_timestamp",
    ]
    if group.grain is Grain.TRANSACTION:
        columns += ["transaction_id", "is_snapshot"]
    columns += [f'"{name}"' for name in group.feature_names]
    return f'select {", ".join(columns)} from "{schema}"."{group.name}"'


def _postgres_source(group: FeatureGroup):
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
        PostgreSQLSource,
    )

    schema = os.environ.get("SKEWLESS_PG_SCHEMA")
    if not schema:
        raise RuntimeError("the postgres offline store needs SKEWLESS_PG_SCHEMA (the dbt schema)")
    return PostgreSQLSource(
        name=f"{group.name}_source",
        query=postgres_query(group, schema),
        timestamp_field="event_timestamp",
        description=f"dbt table {schema}.{group.name}: {group.description}",
        owner="ml-platform@skewless.dev",
        tags={"dbt_model": group.name, "grain": group.grain.value},
    )


def _spark_source(group: FeatureGroup):
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    schema = settings.get("SKEWLESS_SPARK_SCHEMA")
    return SparkSource(
        name=f"{group.name}_source",
        table=f"{schema}.{group.name}",
        timestamp_field="event_timestamp",
        description=f"dbt table {schema}.{group.name}: {group.description}",
        owner="ml-platform@skewless.dev",
        tags={"dbt_model": group.name, "grain": group.grain.value},
    )


_make_source = {"postgres": _postgres_source, "spark": _spark_source}.get(
    offline_store_type(), _file_source
)
SOURCES = {group.name: _make_source(group) for group in GROUPS}

# `feast apply` finds the objects among the module's attributes.
globals().update({source.name: source for source in SOURCES.values()})

# Feast requires a batch source behind a push source; it is the group's offline source.
PUSH_SOURCES = {
    group.name: PushSource(
        name=push_source_name(group.name),
        batch_source=SOURCES[group.name],
        description=(
            f"{group.name} windows pushed by the stream consumer (serving/stream_consumer.py) "
            f"from the Redis Stream {STREAM}"
        ),
        owner="ml-platform@skewless.dev",
        tags={"producer": "skewless stream-consumer", "stream": STREAM},
    )
    for group in streamed_groups()
}

globals().update({source.name: source for source in PUSH_SOURCES.values()})
