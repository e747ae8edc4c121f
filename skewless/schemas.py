"""The raw data contract: canonical columns and the warehouse tables holding them.

Every event has an id, a time and an amount, and the key of each declared entity (customer_id,
merchant_id, ... from ``skewless.features.ENTITIES``): a declared entity is a raw column.
"""

from __future__ import annotations

from skewless.features import ENTITIES

EVENT_ID = "transaction_id"
ENTITY_KEYS: tuple[str, ...] = tuple(entity.join_key for entity in ENTITIES)

# Canonical raw transaction columns -> DuckDB type. Order is the table's column order.
RAW_TRANSACTION_COLUMNS: dict[str, str] = {
    EVENT_ID: "VARCHAR",
    "event_timestamp": "TIMESTAMP",  # UTC, no time zone stored
    **dict.fromkeys(ENTITY_KEYS, "VARCHAR"),
    "amount": "DOUBLE",
    "is_fraud": "TINYINT",  # 0/1, NULL = label not known (yet)
    "arrival_timestamp": "TIMESTAMP",  # NULL = arrived at event_timestamp
    "label_timestamp": "TIMESTAMP",  # NULL = event_timestamp + the configured label delay
}
REQUIRED_COLUMNS = (EVENT_ID, "event_timestamp", *ENTITY_KEYS, "amount")
OPTIONAL_COLUMNS = ("is_fraud", "arrival_timestamp", "label_timestamp")
# An event as it travels online (the sidecar's request, the event stream, the exact-mode state,
# the replay): its ids as text, then event_timestamp, amount and, once known, is_fraud and
# label_timestamp.
EVENT_KEYS: tuple[str, ...] = (EVENT_ID, *ENTITY_KEYS)

# The serving log in the warehouse: one row per served request (monitoring/flush.py loads it).
SERVING_LOG_TABLE = "serving.serving_log"
RAW_SCHEMA = "raw"
TRANSACTIONS_TABLE = f"{RAW_SCHEMA}.transactions"
QUARANTINE_TABLE = f"{RAW_SCHEMA}.transactions_quarantine"

_LINEAGE = {"source_file": "VARCHAR", "loaded_at": "TIMESTAMP"}


def event_from_row(row, *, label: bool) -> dict:
    """An online event from a warehouse row (a namedtuple of ``itertuples`` with pandas
    timestamps); with ``label``, its is_fraud and label_timestamp when both are known."""
    import pandas as pd

    event = {key: str(getattr(row, key)) for key in EVENT_KEYS}
    event["event_timestamp"] = row.event_timestamp.to_pydatetime()
    event["amount"] = float(row.amount)
    if label and pd.notna(row.is_fraud) and pd.notna(row.label_timestamp):
        event["is_fraud"] = int(row.is_fraud)
        event["label_timestamp"] = row.label_timestamp.to_pydatetime()
    return event


def request_body(row) -> dict:
    """The realtime task's scoring body of a warehouse row (as ``event_from_row`` reads it): its
    ids, amount and event time as ISO 8601 (UTC, no offset)."""
    event = event_from_row(row, label=False)
    return {**event, "event_timestamp": event["event_timestamp"].isoformat()}


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
