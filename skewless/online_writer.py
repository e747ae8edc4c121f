"""Materialization into Redis in Feast's own layout, without Feast's per-value Python path.

`feast materialize` reads the latest row per entity from the offline store, then converts every
value to a protobuf object and hashes every field name with murmur3 once per value before its
pipeline writes them (most of its time, measured). This writer reads the same rows from the same
source - the Parquet file dbt exports for each batch view, rows with ``event_timestamp`` in
[start, end], the latest per entity - encodes whole columns at once (``skewless.feast_layout``:
the field hashes once per view, the values as Feast serializes them) and sends the hashes as packed
RESP. Same keys, fields and bytes as Feast (tests/dbt/test_online_writer.py compares them byte for
byte), and Feast's rule: a row never replaces one stored with a newer or equal timestamp.

It reads the embedded offline store (dbt's Parquet exports). With another offline store selected
(FEAST_FS_YAML_FILE_PATH), ``pipeline.materialize`` runs Feast's own materialization instead.
Two rows of one entity at the same latest instant: Feast keeps an arbitrary one; this writer the
snapshot row, then the greatest transaction id.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

from skewless import feast_layout, redis_server, resp
from skewless.features import GROUPS, FeatureGroup
from skewless.settings import Settings

BATCH = 10_000  # hashes per packed RESP batch
_NULL = resp.bulk(b"")


def latest_rows(cfg: Settings, group: FeatureGroup, start: datetime, end: datetime):
    """The latest row per entity with event time in [start, end] (naive times: UTC), as Arrow."""
    import duckdb

    path = cfg.feature_export_dir / f"feast_{group.name}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no dbt export for {group.name} (run `skewless build`)")
    key = group.entity.join_key
    columns = ", ".join(f'"{name}"' for name in group.feature_names)
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        names = {
            row[0]
            for row in con.execute("describe select * from read_parquet(?)", [str(path)]).fetchall()
        }
        ties = [f"{c} desc" for c in ("is_snapshot", "transaction_id") if c in names]
        order = ", ".join(["event_timestamp desc", *ties])
        sql = f"""
            select "{key}" as entity, epoch_us(event_timestamp) as micros, {columns}
            from read_parquet(?)
            where event_timestamp >= ? and event_timestamp <= ?
            qualify row_number() over (partition by "{key}" order by {order}) = 1
        """  # noqa: S608 - names from the declaration
        return con.sql(sql, params=[str(path), _utc(start), _utc(end)]).to_arrow_table()
    finally:
        con.close()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _double_bulks(column) -> list[bytes]:
    """Each value of a float64 Arrow column as a RESP bulk of its Value (nulls and NaN empty)."""
    values = column.cast("double").to_numpy(zero_copy_only=False)
    n = len(values)
    packed = np.empty((n, 15), dtype=np.uint8)
    packed[:, :5] = np.frombuffer(b"$9\r\n\x29", dtype=np.uint8)
    packed[:, 5:13] = np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    packed[:, 13:] = np.frombuffer(b"\r\n", dtype=np.uint8)
    raw = packed.tobytes()
    bulks = [raw[i : i + 15] for i in range(0, 15 * n, 15)]
    for i in np.flatnonzero(np.isnan(values)).tolist():  # nulls arrive as NaN too
        bulks[i] = _NULL
    return bulks


def _int_bulks(column) -> list[bytes]:
    cache: dict = {None: _NULL}
    out = []
    for value in column.cast("int64").to_pylist():
        encoded = cache.get(value)
        if encoded is None:
            encoded = cache[value] = resp.bulk(feast_layout.encode_int64(value))
        out.append(encoded)
    return out


def _encoded_columns(group: FeatureGroup, table) -> list[tuple[bytes, list[bytes]]]:
    """(field bulk, value bulks) per feature of ``group``."""
    out = []
    for feature in group.features:
        if feature.dtype == "float64":
            values = _double_bulks(table.column(feature.name))
        elif feature.dtype == "int64":
            values = _int_bulks(table.column(feature.name))
        else:
            raise ValueError(f"{group.name}.{feature.name}: dtype {feature.dtype} is not written")
        out.append((resp.bulk(feast_layout.feature_field(group.name, feature.name)), values))
    return out


def _timestamp_nanos(stored: bytes | None) -> int:
    if not stored:
        return 0
    when = feast_layout.decode_timestamp_parts(stored)
    return when[0] * 1_000_000_000 + when[1]


def write_group(
    client, cfg: Settings, group: FeatureGroup, start: datetime, end: datetime, project: str
) -> dict:
    """Writes ``group``'s latest rows to one Redis server (``client``) under Feast ``project``.
    Returns counts."""
    table = latest_rows(cfg, group, start, end)
    keys = [
        feast_layout.entity_key(group.entity.join_key, str(v), project)
        for v in table.column("entity").to_pylist()
    ]
    micros = table.column("micros").to_pylist()
    columns = _encoded_columns(group, table)
    ts_field = feast_layout.timestamp_field(group.name)
    head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (1 + len(columns)))
    ts_bulk = resp.bulk(ts_field)
    stored = _stored_nanos(client, keys, ts_field)
    skipped = 0

    def batches():
        nonlocal skipped
        for first in range(0, len(keys), BATCH):
            parts, count = [], 0
            for i in range(first, min(first + BATCH, len(keys))):
                if stored[i] and micros[i] * 1000 <= stored[i]:
                    skipped += 1  # Feast's rule: never over a newer or equal row
                    continue
                parts += (head, resp.bulk(keys[i]), ts_bulk)
                parts.append(resp.bulk(feast_layout.encode_timestamp_micros(micros[i])))
                for field, values in columns:
                    parts += (field, values[i])
                count += 1
            if count:
                yield b"".join(parts), count

    written = resp.send_batches(client, batches())
    return {"rows": len(keys), "written": written, "skipped_not_newer": skipped}


def _stored_nanos(client, keys: list[bytes], ts_field: bytes) -> list[int]:
    """The ``_ts`` already stored for each key, in nanoseconds (0: none)."""
    stored: list[int] = []
    field = resp.bulk(ts_field)
    head = b"*3\r\n$5\r\nHMGET\r\n"

    def batches():
        for first in range(0, len(keys), BATCH):
            chunk = keys[first : first + BATCH]
            yield b"".join(head + resp.bulk(k) + field for k in chunk), len(chunk)

    resp.send_batches(client, batches(), lambda replies: stored.extend(
        _timestamp_nanos(r[0]) for r in replies
    ))  # fmt: skip
    return stored


def materialize(cfg: Settings, *, end: datetime, start: datetime, redis_url: str) -> dict:
    """Every batch view (one per declared group) into the Redis at ``redis_url`` (one server)."""
    project, version = feast_layout.feast_project(cfg.feast_repo)
    if version != 3:
        raise ValueError(f"entity_key_serialization_version {version}: only 3 is written")
    client = redis_server.connect(redis_url, cluster=False)
    started = time.perf_counter()
    try:
        views = {g.name: write_group(client, cfg, g, start, end, project) for g in GROUPS}
    finally:
        client.close()
    return {
        "writer": "skewless",
        "views": views,
        "seconds": round(time.perf_counter() - started, 3),
    }
