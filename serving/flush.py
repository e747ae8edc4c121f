"""Flushes the serving log (Redis Stream ``skewless:serving_log``) into the warehouse.

The sidecar never opens the warehouse (DESIGN section 8, DuckDB has one writer); this is the step
that does, with one read-write connection, closed at the end. Rows go to ``serving.serving_log``,
one per request id: an entry whose request id is already there is skipped, so re-flushing the
same entries changes nothing. The JSON fields (features, features_missing, feature_timestamps)
stay JSON text.
"""

from __future__ import annotations

import json

from serving import log

SCHEMA = "serving"
TABLE = f"{SCHEMA}.serving_log"

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


def _frame(entries):
    """The read_log frame as table rows: JSON fields back to text, one row per request id
    (the newest entry wins)."""
    frame = entries.copy()
    for name in log.JSON_FIELDS:
        frame[name] = [json.dumps(v, separators=(",", ":"), sort_keys=True) for v in frame[name]]
    frame = frame.drop_duplicates("request_id", keep="last")
    return frame[list(COLUMNS)]


def flush_log(cfg=None, *, redis_url: str | None = None) -> dict:
    """Reads the whole serving log and inserts the requests not yet in ``serving.serving_log``.
    Returns ``{"read", "inserted", "already_flushed", "table_rows"}``."""
    import redis

    from serving.replay import sidecar_redis_url
    from skewless import settings, warehouse

    cfg = cfg or settings.load()
    client = redis.Redis.from_url(sidecar_redis_url(cfg, redis_url))
    try:
        entries = log.read_log(client)
    finally:
        client.close()
    rows = _frame(entries)

    con = warehouse.connect(cfg.warehouse_path)
    try:
        for statement in _DDL:
            con.execute(statement)
        con.execute("BEGIN")
        ((before,),) = con.execute(f"select count(*) from {TABLE}").fetchall()
        if len(rows):
            con.register("serving_log_batch", rows)
            con.execute(
                f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
                f"SELECT {', '.join(COLUMNS)} FROM serving_log_batch "
                "ON CONFLICT (request_id) DO NOTHING"
            )
            con.unregister("serving_log_batch")
        ((after,),) = con.execute(f"select count(*) from {TABLE}").fetchall()
        con.execute("COMMIT")
    finally:
        con.close()
    return {
        "read": len(entries),
        "inserted": after - before,
        "already_flushed": len(rows) - (after - before),
        "table_rows": after,
        "table": TABLE,
    }
