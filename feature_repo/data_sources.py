"""Offline sources: the Parquet files dbt exports (models/exports), one per feature group.

Feast never opens the DuckDB warehouse: it has one writer, and dbt is it.
"""

from feast import FileSource
from feast.data_format import ParquetFormat

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
