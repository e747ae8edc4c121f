"""The raw data contract: canonical columns and the warehouse tables holding them."""

from __future__ import annotations

# Canonical raw transaction columns -> DuckDB type. Order is the table's column order.
RAW_TRANSACTION_COLUMNS: dict[str, str] = {
    "transaction_id": "VARCHAR",
    "event_timestamp": "TIMESTAMP",  # UTC, no time zone stored
    "customer_id": "VARCHAR",
    "merchant_id": "VARCHAR",
    "amount": "DOUBLE",
    "is_fraud": "TINYINT",  # 0/1, NULL = label not known (yet)
    "arrival_timestamp": "TIMESTAMP",  # NULL = arrived at event_timestamp
    "label_timestamp": "TIMESTAMP",  # NULL = event_timestamp + the configured label delay
}
REQUIRED_COLUMNS = ("transaction_id", "event_timestamp", "customer_id", "merchant_id", "amount")
OPTIONAL_COLUMNS = ("is_fraud", "arrival_timestamp", "label_timestamp")

RAW_SCHEMA = "raw"
TRANSACTIONS_TABLE = f"{RAW_SCHEMA}.transactions"
QUARANTINE_TABLE = f"{RAW_SCHEMA}.transactions_quarantine"

_LINEAGE = {"source_file": "VARCHAR", "loaded_at": "TIMESTAMP"}


def ddl() -> list[str]:
    """Statements that create the raw tables if missing (idempotent)."""
    typed = ",\n  ".join(f"{name} {kind}" for name, kind in RAW_TRANSACTION_COLUMNS.items())
    lineage = ",\n  ".join(f"{name} {kind}" for name, kind in _LINEAGE.items())
    # Quarantined rows keep every canonical value as the text it arrived as.
    as_text = ",\n  ".join(f"{name} VARCHAR" for name in RAW_TRANSACTION_COLUMNS)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}",
        f"CREATE TABLE IF NOT EXISTS {TRANSACTIONS_TABLE} (\n  {typed},\n  {lineage},\n"
        "  PRIMARY KEY (transaction_id)\n)",
        f"CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (\n  source_row BIGINT,\n  {as_text},\n"
        f"  reason VARCHAR NOT NULL,\n  {lineage}\n)",
    ]
