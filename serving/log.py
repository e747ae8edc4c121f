"""The serving log: one Redis Stream entry per scored request.

The sidecar never opens the warehouse (one writer); it appends to ``skewless:serving_log`` with
XADD (MAXLEN ~ a large bound) and the skew report (or a DAG task) reads the stream back with
``read_log()`` and flushes it into the warehouse.

Entry fields (all strings): request_id, transaction_id, customer_id, merchant_id, amount,
event_timestamp (ISO, naive UTC), served_at (ISO, naive UTC), mode, features (JSON object, null =
no value), features_missing (JSON list), feature_timestamps (JSON: group -> time of the feature
row served), model_name, model_version, fraud_probability, decision, latency_ms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import orjson

from skewless.schemas import EVENT_KEYS

STREAM = "skewless:serving_log"
DEFAULT_MAXLEN = 1_000_000

FIELDS = (
    "request_id",
    *EVENT_KEYS,
    "amount",
    "event_timestamp",
    "served_at",
    "mode",
    "features",
    "features_missing",
    "feature_timestamps",
    "model_name",
    "model_version",
    "fraud_probability",
    "decision",
    "latency_ms",
)
JSON_FIELDS = ("features", "features_missing", "feature_timestamps")
# The sidecar's JSON (these fields, its answers): orjson taking what json.dumps took, NumPy numbers
# and non-string keys (as strings); NaN becomes null.
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_FLOAT_FIELDS = ("amount", "fraud_probability", "latency_ms")
_TIME_FIELDS = ("event_timestamp", "served_at")


def encode(entry: Mapping) -> dict[str, str]:
    out = {}
    for name in FIELDS:
        value = entry[name]
        if name in JSON_FIELDS:
            out[name] = orjson.dumps(value, option=JSON_OPTIONS).decode()
        elif isinstance(value, float):
            out[name] = repr(value)
        else:
            out[name] = str(value)
    return out


def append(target, entry: Mapping, *, maxlen: int = DEFAULT_MAXLEN, stream: str = STREAM) -> None:
    """XADD one entry; ``target`` is a Redis client or a pipeline (then the caller executes)."""
    target.xadd(stream, encode(entry), maxlen=maxlen, approximate=True)


def xadd_command(entry: Mapping, *, maxlen: int = DEFAULT_MAXLEN, stream: str = STREAM) -> tuple:
    """append() as one Redis command, to send along with others in one round trip."""
    fields = [part for item in encode(entry).items() for part in item]
    return ("XADD", stream, "MAXLEN", "~", maxlen, "*", *fields)


def read_raw(redis, *, start: str = "-", end: str = "+", batch: int = 20_000, stream: str = STREAM):
    """The stream's entries as columns of text, untouched (JSON fields stay JSON): a dict of
    ``stream_id`` and every field -> list of str (None where an entry lacks the field), in
    stream order. What ``flush`` loads into the warehouse, which types the columns itself."""
    columns: dict[str, list] = {name: [] for name in ("stream_id", *FIELDS)}
    ids = columns["stream_id"]
    values = [(name, columns[name]) for name in FIELDS]
    cursor = start
    while True:
        chunk = redis.xrange(stream, min=cursor, max=end, count=batch)
        for entry_id, fields in chunk:
            ids.append(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
            if fields and isinstance(next(iter(fields)), bytes):
                fields = {k.decode(): v.decode() for k, v in fields.items()}
            for name, column in values:
                column.append(fields.get(name))
        if len(chunk) < batch:
            break
        cursor = "(" + ids[-1]
    return columns


def read_log(redis, *, start: str = "-", end: str = "+", batch: int = 10_000, stream: str = STREAM):
    """The stream (or the [start, end] range of entry ids) as a DataFrame, one row per request.

    Columns: ``stream_id`` and every entry field, with times as datetime64 (naive UTC), amounts,
    scores and latencies as floats, and ``features`` / ``features_missing`` /
    ``feature_timestamps`` decoded from JSON (see ``feature_frame()`` for a column per feature).
    ``redis`` is a client or a URL.
    """
    import pandas as pd

    if isinstance(redis, str):
        from skewless import redis_server

        redis = redis_server.connect(redis)
    rows = []
    cursor = start
    while True:
        chunk = redis.xrange(stream, min=cursor, max=end, count=batch)
        for entry_id, fields in chunk:
            row = {"stream_id": entry_id.decode() if isinstance(entry_id, bytes) else entry_id}
            for key, value in fields.items():
                key = key.decode() if isinstance(key, bytes) else key
                row[key] = value.decode() if isinstance(value, bytes) else value
            rows.append(row)
        if len(chunk) < batch:
            break
        cursor = "(" + rows[-1]["stream_id"]
    frame = pd.DataFrame(rows, columns=["stream_id", *FIELDS])
    for name in JSON_FIELDS:
        frame[name] = frame[name].map(json.loads)
    for name in _FLOAT_FIELDS:
        frame[name] = frame[name].astype("float64")
    for name in _TIME_FIELDS:
        frame[name] = pd.to_datetime(frame[name], format="ISO8601")
    return frame


def feature_frame(log):
    """One column per feature (float64, NaN = no value), aligned with ``log``'s index."""
    import pandas as pd

    return pd.DataFrame(list(log["features"]), index=log.index).astype("float64")
