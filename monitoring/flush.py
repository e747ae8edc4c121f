"""Flushes the serving log (Redis Stream ``skewless:serving_log``) into the warehouse.

The sidecar never opens the warehouse (DuckDB has one writer); this is the step
that does, with one read-write connection, closed at the end. Rows go to ``serving.serving_log``,
one per request id: an entry whose request id is already there is skipped, so re-flushing the
same entries changes nothing. The entries are loaded as text, as the sidecar wrote them, and typed
by DuckDB; the JSON fields (features, features_missing, feature_timestamps) stay JSON text.
"""

from __future__ import annotations

from serving import log
from skewless.schemas import SERVING_LOG_TABLE

TABLE = SERVING_LOG_TABLE
SCHEMA = TABLE.split(".")[0]

_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
  request_id VARCHAR PRIMARY KEY,
  stream_id VARCHAR NOT NULL,
  transaction_id VARCHAR NOT NULL,
  customer_id VARCHAR NOT NULL,
  merchant_id VARCHAR NOT NULL,
  amount DOUBLE,
  event_timestamp TIMESTAMP,
  served_at TIMESTAMP,
  mode VARCHAR,
  features VARCHAR,
  features_missing VARCHAR,
  feature_timestamps VARCHAR,
  model_name VARCHAR,
  model_version VARCHAR,
  fraud_probability DOUBLE,
  decision VARCHAR,
  latency_ms DOUBLE
)""",
)
# the log's fields, with the stream entry id after the request id (the table's column order)
COLUMNS = ("request_id", "stream_id", *(f for f in log.FIELDS if f != "request_id"))
_TYPES = {
    "amount": "DOUBLE",
    "event_timestamp": "TIMESTAMP",
    "served_at": "TIMESTAMP",
    "fraud_probability": "DOUBLE",
    "latency_ms": "DOUBLE",
}


def _select() -> str:
    """The batch (text columns, ``position`` = stream order) as table rows: typed by DuckDB, one
    row per request id (the newest entry wins)."""
    typed = ", ".join(
        f"CAST({name} AS {_TYPES[name]}) AS {name}" if name in _TYPES else name for name in COLUMNS
    )
    return (
        f"SELECT {typed} FROM serving_log_batch "
        "QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY position DESC) = 1"
    )


def flush_log(cfg=None, *, redis_url: str | None = None) -> dict:
    """Reads the whole serving log and inserts the requests not yet in ``serving.serving_log``.
    Returns ``{"read", "inserted", "already_flushed", "table_rows"}``."""
    import pyarrow as pa

    from skewless import redis_server, settings, warehouse
    from skewless.redis_server import serving_url

    cfg = cfg or settings.load()
    client = redis_server.connect(
        serving_url(cfg, redis_url), cluster=cfg.redis_cluster, decode_responses=True
    )
    try:
        columns = log.read_raw(client)
    finally:
        client.close()
    read = len(columns["stream_id"])
    batch = pa.table(
        {
            **{name: pa.array(values, type=pa.string()) for name, values in columns.items()},
            "position": pa.array(range(read), type=pa.int64()),
        }
    )

    con = warehouse.connect(cfg.warehouse_path)
    try:
        for statement in _DDL:
            con.execute(statement)
        con.execute("BEGIN")
        ((before,),) = con.execute(f"select count(*) from {TABLE}").fetchall()
        if read:
            con.register("serving_log_batch", batch)
            ((distinct,),) = con.execute(
                "select count(distinct request_id) from serving_log_batch"
            ).fetchall()
            con.execute(
                f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) {_select()} "
                "ON CONFLICT (request_id) DO NOTHING"
            )
            con.unregister("serving_log_batch")
        else:
            distinct = 0
        ((after,),) = con.execute(f"select count(*) from {TABLE}").fetchall()
        con.execute("COMMIT")
    finally:
        con.close()
    return {
        "read": read,
        "inserted": after - before,
        "already_flushed": distinct - (after - before),
        "table_rows": after,
        "table": TABLE,
    }
