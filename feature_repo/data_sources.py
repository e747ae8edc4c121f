"""Offline sources: the Parquet files dbt exports (models/exports), one per feature group; and a
push source per group of the fraud service, fed by the stream consumer (serving/stream.py).

Feast never opens the DuckDB warehouse: it has one writer, and dbt is it.
"""

from feast import FileSource, PushSource
from feast.data_format import ParquetFormat

from serving.stream import STREAM, push_source_name, streamed_groups
from skewless import settings
from skewless.features import GROUPS

_export_dir = settings.load().feature_export_dir

SOURCES = {
    group.name: FileSource(
        name=f"{group.name}_source",
        path=str(_export_dir / f"feast_{group.name}.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        description=f"dbt export of {group.name}: {group.description}",
        owner="ml-platform@skewless.dev",
        tags={"dbt_model": f"feast_{group.name}", "grain": group.grain.value},
    )
    for group in GROUPS
}

customer_transaction_windows_source = SOURCES["customer_transaction_windows"]
merchant_transaction_windows_source = SOURCES["merchant_transaction_windows"]
customer_daily_activity_source = SOURCES["customer_daily_activity"]

# Feast requires a batch source behind a push source; it is the group's dbt export.
PUSH_SOURCES = {
    group.name: PushSource(
        name=push_source_name(group.name),
        batch_source=SOURCES[group.name],
        description=(
            f"{group.name} windows pushed by the stream consumer (serving/stream.py) from the "
            f"Redis Stream {STREAM}"
        ),
        owner="ml-platform@skewless.dev",
        tags={"producer": "skewless stream-consumer", "stream": STREAM},
    )
    for group in streamed_groups()
}

customer_transaction_windows_push = PUSH_SOURCES["customer_transaction_windows"]
merchant_transaction_windows_push = PUSH_SOURCES["merchant_transaction_windows"]
