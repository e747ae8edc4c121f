"""Fuzzing POST /v1/fraud/score: whatever a client sends, never a 5xx; every 400 points at the
input at fault with a JSON Pointer that resolves in the body (or names a missing required field).

Falsifying inputs found by `make fuzz` are pinned below with ``@example``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.helpers import unescape_pointer
from tests.properties import examples

REQUIRED = ("transaction_id", "customer_id", "merchant_id", "amount", "event_timestamp")

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
offsets = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=11))]
)


def _timestamps(low: datetime, high: datetime):
    return st.builds(
        lambda when, tz: when.replace(tzinfo=tz).isoformat(), st.datetimes(low, high), offsets
    )


# Per field: a plausible value, an edge of its type, or junk (or the field is left out).
GOOD = {
    "transaction_id": st.text(min_size=1, max_size=40),
    "customer_id": st.sampled_from(["c00001", "c00002", "unknown"]) | st.text(min_size=1),
    "merchant_id": st.sampled_from(["m00001", "m00003"]) | st.text(min_size=1, max_size=20),
    "amount": st.floats(0, 1e6) | st.integers(0, 10**6),
    "event_timestamp": _timestamps(datetime(2024, 1, 1), datetime(2026, 1, 1)),
    "mode": st.sampled_from(["materialized", "exact"]),
}
EDGE = {
    "transaction_id": st.text(max_size=200),
    "customer_id": st.text(max_size=200),
    "merchant_id": st.text(max_size=200),
    "amount": st.floats() | st.integers(-(10**30), 10**30),
    "event_timestamp": _timestamps(datetime(1, 1, 1), datetime(9999, 12, 31))
    | st.text(max_size=30),
    "mode": st.sampled_from(["Exact", "", "batch", "streaming "]),
}


@st.composite
def bodies(draw):
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=200))
    if draw(st.integers(0, 19)) == 0:
        return json.dumps(draw(junk)).encode()
    obj = {}
    for name in GOOD:
        roll = draw(st.integers(0, 99))
        if roll < 4 or (name == "mode" and roll < 50):
            continue  # missing (mode is optional)
        obj[name] = draw(junk if roll < 8 else EDGE[name] if roll < 16 else GOOD[name])
    if draw(st.integers(0, 9)) == 0:
        obj[draw(st.text(min_size=1, max_size=10))] = draw(junk)
    return json.dumps(obj).encode()  # NaN / Infinity become the non-standard JSON tokens


@pytest.mark.slow
@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies())
# A key named "." once made the dotted field path ambiguous (field "." could not be told apart).
@example(
    body=b'{"transaction_id": "0", "customer_id": "c00001", "merchant_id": "0", "amount": 0.0,'
    b' "event_timestamp": "2024-01-01T00:00:00", ".": null}'
)
@example(body=json.dumps({"a/b~c": 1, "transaction_id": "t"}).encode())
@example(body=json.dumps({"": 1, "transaction_id": "t"}).encode())
def test_no_5xx_and_every_400_names_a_field(client, body):
    response = client.post("/v1/fraud/score", data=body, content_type="application/json")
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 413), (body, response.get_data())
    payload = response.get_json()
    if response.status_code == 400:
        field = payload["field"]
        assert isinstance(field, str)
        if field == "":  # the body as a whole
            assert payload["error"].startswith("request body: ")
        else:
            (key,) = unescape_pointer(field)  # the schema is flat: one reference token
            assert key in json.loads(body) or key in REQUIRED
            assert payload["error"].startswith(f"{json.dumps(key, ensure_ascii=False)}: ")
    elif response.status_code == 200:
        assert 0.0 <= payload["fraud_probability"] <= 1.0
        assert payload["decision"] in ("approve", "decline")
