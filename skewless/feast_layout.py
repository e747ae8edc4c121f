"""Feast's Redis online-store layout, read and written without importing Feast.

Feast (``feast/infra/online_stores/redis.py``) keeps one hash per entity key:

- key: ``serialize_entity_key(EntityKey, entity_key_serialization_version=3) + project``;
- field per feature: murmur3_32 (unsigned, little endian) of ``"<view>:<feature>"``;
- value: a serialized ``feast.types.Value`` protobuf; field ``_ts:<view>`` holds a serialized
  ``google.protobuf.Timestamp`` (the feature row's event time).

Only what the declaration uses is decoded (scalars); anything else raises ``UnsupportedValue``.
The encoders write what Feast's materialization writes for the declared types (int64, float64;
null and NaN as an empty Value). tests/serving/test_feast_layout.py holds both directions equal to
Feast itself, and tests/dbt/test_online_writer.py the whole materialization.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mmh3

# feast.types.ValueType.STRING (Value.proto): the type tag of string join keys and values.
_STRING = 2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UnsupportedValue(ValueError):
    """A Value protobuf of a kind the sidecar does not decode (lists, maps, …)."""


def feast_project(repo: Path) -> tuple[str, int]:
    """(project, entity_key_serialization_version) from the repo's feature_store.yaml."""
    import yaml

    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    return config["project"], int(config.get("entity_key_serialization_version", 3))


def offline_store_type(repo: Path, chosen: str | Path | None = None) -> str:
    """The offline store type of the feature_store.yaml Feast loads for ``repo``: ``chosen`` (the
    feast CLI's --feature-store-yaml), else FEAST_FS_YAML_FILE_PATH as given, else the repo's
    feature_store.yaml - Feast's own resolution (feast.utils.get_default_yaml_file_path)."""
    import os

    import yaml

    chosen = chosen or os.environ.get("FEAST_FS_YAML_FILE_PATH")
    path = Path(chosen) if chosen else repo / "feature_store.yaml"
    store = (yaml.safe_load(path.read_text()) or {}).get("offline_store", "dask")
    return store if isinstance(store, str) else store.get("type", "dask")


def entity_key(join_key: str, value: str, project: str) -> bytes:
    """The Redis key of one single-join-key entity (serialization version 3)."""
    name, data = join_key.encode(), value.encode()
    return b"".join(
        (
            struct.pack("<III", 1, _STRING, len(name)),
            name,
            struct.pack("<II", _STRING, len(data)),
            data,
            project.encode(),
        )
    )


def feature_field(view: str, feature: str) -> bytes:
    """The hash field of one feature: murmur3_32 of ``view:feature``, 4 bytes little endian."""
    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def timestamp_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


_DOUBLE_TAG = (5 << 3) | 1  # double_val, 64-bit
_INT64_TAG = (4 << 3) | 0  # int64_val, varint
_unpack_double = struct.Struct("<d").unpack_from


def decode_value(data: bytes | None):
    """The Python value of a serialized ``feast.types.Value`` (None for missing or null)."""
    if not data:
        return None
    # fast paths for what the declaration stores: doubles and small non-negative int64s
    first = data[0]
    if first == _DOUBLE_TAG and len(data) == 9:
        return _unpack_double(data, 1)[0]
    if first == _INT64_TAG and len(data) == 2:
        return data[1]
    tag, pos = _varint(data, 0)
    number, wire = tag >> 3, tag & 7
    if number == 5 and wire == 1:  # double_val
        return struct.unpack_from("<d", data, pos)[0]
    if number == 4 and wire == 0:  # int64_val
        return _signed(_varint(data, pos)[0], 64)
    if number == 3 and wire == 0:  # int32_val
        return _signed(_varint(data, pos)[0], 32)
    if number == 6 and wire == 5:  # float_val
        return struct.unpack_from("<f", data, pos)[0]
    if number == 7 and wire == 0:  # bool_val
        return bool(_varint(data, pos)[0])
    if number in (1, 2) and wire == 2:  # bytes_val, string_val
        length, pos = _varint(data, pos)
        raw = bytes(data[pos : pos + length])
        return raw.decode() if number == 2 else raw
    if number == 19 and wire == 0:  # null_val
        return None
    raise UnsupportedValue(f"Value protobuf field {number} (wire type {wire}) is not decoded")


def decode_timestamp(data: bytes | None) -> datetime | None:
    """A serialized ``google.protobuf.Timestamp`` as an aware UTC datetime (None if absent; the
    empty message is the epoch itself)."""
    if data is None:
        return None
    seconds, nanos = decode_timestamp_parts(data)
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def decode_timestamp_parts(data: bytes) -> tuple[int, int]:
    """(seconds, nanos) of a serialized ``google.protobuf.Timestamp``."""
    seconds = nanos = 0
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        value, pos = _varint(data, pos)
        if tag >> 3 == 1:
            seconds = _signed(value, 64)
        elif tag >> 3 == 2:
            nanos = _signed(value, 32)
    return seconds, nanos


# -- writing ---------------------------------------------------------------------------------------

_U64 = (1 << 64) - 1
_pack_double = struct.Struct("<d").pack


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negatives: pass ``value & _U64``)."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_double(value: float | None) -> bytes:
    """A ``feast.types.Value`` with ``double_val`` (empty for null or NaN, as Feast writes them)."""
    if value is None or value != value:
        return b""
    return b"\x29" + _pack_double(value)


def encode_int64(value: int | None) -> bytes:
    """A ``feast.types.Value`` with ``int64_val`` (empty for null)."""
    if value is None:
        return b""
    return b"\x20" + varint(int(value) & _U64)


def encode_timestamp(when: datetime) -> bytes:
    """A ``google.protobuf.Timestamp`` of ``when`` (naive: UTC), as Feast stores ``_ts:<view>``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return encode_timestamp_micros(
        (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    )


def encode_timestamp_micros(micros: int) -> bytes:
    """The Timestamp of ``micros`` since the epoch: seconds and non-negative nanos, each left out
    when zero."""
    seconds, micros = divmod(micros, 1_000_000)
    out = b"\x08" + varint(seconds & _U64) if seconds else b""
    return out + (b"\x10" + varint(micros * 1000) if micros else b"")
