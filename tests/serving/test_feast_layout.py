"""The direct HMGET reader returns exactly what Feast's get_online_features returns."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from serving.readers import MaterializedReader
from skewless import feast_layout, settings
from skewless.feast_layout import feast_project
from skewless.features import FEATURE_SERVICES
from tests.featurecheck import identical

FRAUD_V1 = next(s for s in FEATURE_SERVICES if s.name == "fraud_v1")


def test_keys_and_fields_are_feasts():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    for value in ("c00001", "", "ü-ß-漢字", "x" * 300):
        key = EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=value)])
        assert feast_layout.entity_key("customer_id", value, "skewless") == _redis_key(
            "skewless", key, entity_key_serialization_version=3
        )
        assert serialize_entity_key(key, 3) + b"p" == feast_layout.entity_key(
            "customer_id", value, "p"
        )
    for name in ("customer_transaction_windows:customer_tx_count_1h", "a:b", "ü:漢"):
        view, feature = name.split(":")
        assert feast_layout.feature_field(view, feature) == _mmh3(name)


@given(
    st.one_of(
        st.builds(lambda v: ("double_val", v), st.floats(allow_nan=True)),
        st.builds(lambda v: ("int64_val", v), st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda v: ("int32_val", v), st.integers(-(2**31), 2**31 - 1)),
        st.builds(lambda v: ("float_val", v), st.floats(width=32)),
        st.builds(lambda v: ("bool_val", v), st.booleans()),
        st.builds(lambda v: ("string_val", v), st.text(max_size=200)),
        st.builds(lambda v: ("bytes_val", v), st.binary(max_size=200)),
    )
)
def test_value_protobufs_decode_like_protobuf(kind_value):
    from feast.protos.feast.types.Value_pb2 import Value

    kind, value = kind_value
    decoded = feast_layout.decode_value(Value(**{kind: value}).SerializeToString())
    expected = getattr(Value.FromString(Value(**{kind: value}).SerializeToString()), kind)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(decoded)
    else:
        assert decoded == expected and type(decoded) is type(expected)


def test_empty_and_null_values_are_none_and_lists_are_refused():
    from feast.protos.feast.types.Value_pb2 import DoubleList, Value

    assert feast_layout.decode_value(None) is None
    assert feast_layout.decode_value(Value().SerializeToString()) is None
    assert feast_layout.decode_value(Value(null_val=0).SerializeToString()) is None
    with pytest.raises(feast_layout.UnsupportedValue):
        feast_layout.decode_value(Value(double_list_val=DoubleList(val=[1.0])).SerializeToString())


def test_timestamps_decode_like_protobuf():
    from datetime import UTC, datetime

    from google.protobuf.timestamp_pb2 import Timestamp

    for when in (datetime(2025, 4, 15, tzinfo=UTC), datetime(1969, 7, 20, 20, 17, 40, 5, UTC)):
        ts = Timestamp()
        ts.FromDatetime(when)
        assert feast_layout.decode_timestamp(ts.SerializeToString()) == when
    assert feast_layout.decode_timestamp(None) is None


@given(
    st.one_of(st.none(), st.floats(allow_nan=True)),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1)),
)
@example(float("nan"), 0, datetime(1970, 1, 1))
@example(-0.0, -1, datetime(1969, 12, 31, 23, 59, 59, 999999))
def test_values_and_timestamps_encode_as_feast_writes_them(double, integer, when):
    """What Feast's materialization writes (feast.utils._convert_arrow_to_proto, then
    Timestamp.FromDatetime in the Redis store): null and NaN become an empty Value."""
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType
    from google.protobuf.timestamp_pb2 import Timestamp

    (as_double,) = python_values_to_proto_values([double], ValueType.DOUBLE)
    assert feast_layout.encode_double(double) == as_double.SerializeToString()
    expected = b"" if integer is None else Value(int64_val=integer).SerializeToString()
    assert feast_layout.encode_int64(integer) == expected
    ts = Timestamp()
    ts.FromDatetime(when.replace(tzinfo=UTC))
    assert feast_layout.encode_timestamp(when) == ts.SerializeToString()
    assert feast_layout.decode_timestamp(feast_layout.encode_timestamp(when)) == when.replace(
        tzinfo=UTC
    )


@pytest.fixture(scope="module")
def feast_store(serving_env):
    from skewless import pipeline

    return pipeline.feature_store(serving_env.cfg, serving_env.redis_url)


@pytest.mark.slow
def test_the_reader_returns_what_get_online_features_returns(
    serving_env, feast_store, transactions
):
    """Every customer and merchant of the warehouse, plus unknown ones, after materialization."""
    import redis

    customers = sorted(transactions["customer_id"].unique()) + ["no-such-customer"]
    merchants = sorted(transactions["merchant_id"].unique()) + ["no-such-merchant"]
    rows = [
        {"customer_id": customers[i % len(customers)], "merchant_id": merchants[i % len(merchants)]}
        for i in range(max(len(customers), len(merchants)))
    ]
    expected = feast_store.get_online_features(
        features=feast_store.get_feature_service("fraud_v1"), entity_rows=rows
    ).to_dict()

    known = [v for v in expected["customer_tx_count_30d"] if v is not None]
    known_rows = [r for r in rows if not r["customer_id"].startswith("no-such-")]
    assert len(known) == len(known_rows) and any(known)  # Feast found every known customer
    client = redis.Redis.from_url(serving_env.redis_url)
    project, version = feast_project(settings.PROJECT_ROOT / "feature_repo")
    assert (project, version) == (feast_store.config.project, 3)
    reader = MaterializedReader(client, FRAUD_V1, project)
    names = [n for g in FRAUD_V1.groups for n in g.feature_names]
    mismatches = []
    for i, row in enumerate(rows):
        raw = reader.read_raw(row)
        got = {}
        for group in FRAUD_V1.groups:
            ts, values = raw[group.name]
            unknown = row[group.entity.join_key].startswith("no-such-")
            assert (values is None) == unknown  # every known entity has its snapshot row
            if values is None:
                values = dict.fromkeys(group.feature_names)
            else:
                assert ts.replace(tzinfo=None) == serving_env.cutoff
            got.update(values)
        mismatches += [
            (row, name, got[name], expected[name][i])
            for name in names
            if not identical(got[name], expected[name][i])
        ]
    assert mismatches == []
    client.close()


@pytest.mark.slow
def test_one_round_trip_per_request(serving_env, transactions, monkeypatch):
    """Both entities' HMGETs go out in one write, and their replies come back together."""
    import redis

    client = redis.Redis.from_url(serving_env.redis_url)
    project, _ = feast_project(settings.PROJECT_ROOT / "feature_repo")
    reader = MaterializedReader(client, FRAUD_V1, project)
    row = transactions.iloc[-1]
    keys = {"customer_id": row["customer_id"], "merchant_id": row["merchant_id"]}
    reader.read_raw(keys)  # connects (handshake commands) first
    sent = []
    original = redis.connection.Connection.send_packed_command

    def counting(self, command, *args, **kwargs):
        sent.append(command)
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    raw = reader.read_raw(keys)
    assert len(sent) == 1 and all(values is not None for _, values in raw.values())
    client.close()


def test_entity_key_layout_is_version_3():
    key = feast_layout.entity_key("customer_id", "c1", "skewless")
    assert struct.unpack_from("<III", key) == (1, 2, len("customer_id"))
