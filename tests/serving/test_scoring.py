"""POST /v1/fraud/score: the scoring contract, errors, auth, modes, the serving log."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest

from models.datasets import feature_columns
from serving import log as serving_log
from serving.openapi import openapi
from tests.helpers import score_body, unescape_pointer

pytestmark = pytest.mark.slow  # on the built pipeline (dbt, Feast, MLflow)

URL = "/v1/fraud/score"


def _validator(component: str):
    doc = openapi()
    schema = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def last_day(transactions):
    cutoff_day = transactions["event_timestamp"].max().normalize()
    return transactions[transactions["event_timestamp"] >= cutoff_day].reset_index(drop=True)


def test_scores_a_transaction_by_the_contract(client, last_day, serving_env, redis_client):
    row = last_day.iloc[0]
    response = client.post(URL, json=score_body(row), headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    _validator("ScoreResponse").validate(body)
    assert set(body) >= {
        "transaction_id", "fraud_probability", "decision", "model", "mode", "features", "latency_ms"
    }  # fmt: skip
    assert body["transaction_id"] == row["transaction_id"]
    assert body["request_id"] == "req-1" and response.headers["X-Request-ID"] == "req-1"
    assert body["model"] == {"name": "fraud", "version": serving_env.model_version}
    assert body["mode"] == "materialized"
    assert list(body["features"]) == feature_columns("fraud")
    assert body["features"]["amount"] == pytest.approx(float(row["amount"]))
    assert body["features"]["hour_of_day"] == row["event_timestamp"].hour
    assert 0.0 <= body["fraud_probability"] <= 1.0
    threshold = serving_env.threshold
    assert body["decision"] == ("decline" if body["fraud_probability"] >= threshold else "approve")
    assert body["features_missing"] == []
    assert 0 < body["latency_ms"] < 1000

    # one serving-log entry with everything the skew report needs
    log = serving_log.read_log(redis_client)
    assert len(log) == 1
    entry = log.iloc[0]
    assert entry["request_id"] == "req-1" and entry["transaction_id"] == row["transaction_id"]
    assert entry["customer_id"] == row["customer_id"] and entry["mode"] == "materialized"
    assert entry["event_timestamp"] == row["event_timestamp"]
    assert entry["features"] == body["features"]
    assert entry["fraud_probability"] == body["fraud_probability"]
    assert entry["model_version"] == serving_env.model_version
    assert entry["decision"] == body["decision"] and entry["latency_ms"] == body["latency_ms"]
    assert entry["feature_timestamps"] == {
        "customer_transaction_windows": serving_env.cutoff.isoformat(),
        "merchant_transaction_windows": serving_env.cutoff.isoformat(),
    }
    frame = serving_log.feature_frame(log)
    assert list(frame.columns) == feature_columns("fraud")


def test_materialized_features_are_the_state_at_the_cutoff(client, last_day, serving_env):
    """Materialized mode serves each entity's snapshot row (all events before the cutoff)."""
    from skewless import warehouse

    row = last_day.iloc[0]
    body = client.post(URL, json=score_body(row)).get_json()
    con = warehouse.connect(serving_env.cfg.warehouse_path, read_only=True)
    try:
        snapshot = con.execute(
            "select * from customer_transaction_windows where is_snapshot and customer_id = ?",
            [row["customer_id"]],
        ).fetchdf()
    finally:
        con.close()
    expected = snapshot.iloc[0]
    for name in ("customer_tx_count_30d", "customer_amount_sum_7d", "customer_tx_count_1d"):
        assert body["features"][name] == pytest.approx(float(expected[name])), name


def test_the_model_scores_what_the_booster_gives_for_the_served_vector(app, client, last_day):
    import numpy as np

    model = app.extensions["skewless"].model.current
    for _, row in last_day.head(20).iterrows():
        body = client.post(URL, json=score_body(row)).get_json()
        vector = np.array(
            [
                [
                    np.nan if body["features"][c] is None else body["features"][c]
                    for c in model.columns
                ]
            ]
        )
        assert body["fraud_probability"] == pytest.approx(
            model.booster.predict(vector)[0], rel=1e-12
        )


def test_unknown_customer_is_scored_with_empty_history_and_flagged(client, last_day):
    row = last_day.iloc[0]
    body = client.post(URL, json=score_body(row, customer_id="never-seen")).get_json()
    assert body["features_missing"] == ["customer"]
    features = body["features"]
    assert features["customer_tx_count_30d"] == 0 and features["customer_amount_sum_7d"] == 0.0
    assert features["customer_amount_avg_7d"] is None
    assert features["customer_seconds_since_last_tx"] is None
    assert features["amount_to_avg_7d"] is None
    both = client.post(
        URL, json=score_body(row, customer_id="nobody", merchant_id="nowhere")
    ).get_json()
    assert both["features_missing"] == ["customer", "merchant"]
    assert both["features"]["merchant_tx_count_30d"] == 0
    assert both["features"]["merchant_fraud_risk_30d"] is None


def test_request_mode_overrides_the_default_and_streaming_is_not_running(client, last_day):
    row = last_day.iloc[0]
    exact = client.post(URL, json=score_body(row, mode="exact"))
    assert exact.status_code == 200 and exact.get_json()["mode"] == "exact"
    streaming = client.post(URL, json=score_body(row, mode="streaming"))
    assert streaming.status_code == 503
    assert streaming.get_json() == {
        "error": "service unavailable",
        "reason": "streaming consumer not running",
    }


def test_serving_mode_comes_from_the_environment(make_app, monkeypatch, last_day):
    monkeypatch.setenv("SKEWLESS_SERVING_MODE", "exact")
    app = make_app(SERVING_MODE=...)
    body = app.test_client().post(URL, json=score_body(last_day.iloc[0])).get_json()
    assert body["mode"] == "exact"
    with pytest.raises(ValueError, match="SERVING_MODE"):
        make_app(SERVING_MODE="sometimes")


VALID = {
    "transaction_id": "t-1",
    "customer_id": "c1",
    "merchant_id": "m1",
    "amount": 12.5,
    "event_timestamp": "2025-04-14T10:00:00Z",
}


def _without(name):
    return {k: v for k, v in VALID.items() if k != name}


BAD_INPUTS = [
    ("missing transaction_id", json.dumps(_without("transaction_id")), "/transaction_id"),
    ("missing amount", json.dumps(_without("amount")), "/amount"),
    ("extra field", json.dumps({**VALID, "card_number": "4111"}), "/card_number"),
    ("amount as string", json.dumps({**VALID, "amount": "12.5"}), "/amount"),
    ("amount as bool", json.dumps({**VALID, "amount": True}), "/amount"),
    ("negative amount", json.dumps({**VALID, "amount": -0.01}), "/amount"),
    ("NaN amount", json.dumps({**VALID, "amount": float("nan")}), "/amount"),
    ("infinite amount", json.dumps({**VALID, "amount": float("inf")}), "/amount"),
    ("overflowing amount", json.dumps(VALID).replace("12.5", "1e999"), "/amount"),
    ("id as number", json.dumps({**VALID, "customer_id": 42}), "/customer_id"),
    ("empty id", json.dumps({**VALID, "merchant_id": ""}), "/merchant_id"),
    ("id too long", json.dumps({**VALID, "merchant_id": "m" * 129}), "/merchant_id"),
    ("bad timestamp", json.dumps({**VALID, "event_timestamp": "yesterday"}), "/event_timestamp"),
    ("epoch timestamp", json.dumps({**VALID, "event_timestamp": 1744624800}), "/event_timestamp"),
    ("date only", json.dumps({**VALID, "event_timestamp": "2025-04-14"}), "/event_timestamp"),
    ("year 10000", json.dumps({**VALID, "event_timestamp": "9999-12-31T23:00:00-05:00"}), "/event_timestamp"),
    ("unknown mode", json.dumps({**VALID, "mode": "psychic"}), "/mode"),
    ("key named '.'", json.dumps({**VALID, ".": None}), "/."),
    ("key with '/'", json.dumps({**VALID, "a/b": 1}), "/a~1b"),
    ("key with '~'", json.dumps({**VALID, "~1": 1}), "/~01"),
    ("empty key", json.dumps({**VALID, "": 1}), "/"),
    ("broken JSON", '{"transaction_id": "t-1",', ""),
    ("empty body", "", ""),
    ("array body", "[1, 2]", ""),
    ("string body", '"hello"', ""),
    ("null body", "null", ""),
    ("invalid UTF-8", b'{"transaction_id": "\xff"}', ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "payload", "field"), BAD_INPUTS, ids=[c for c, _, _ in BAD_INPUTS]
)
def test_malformed_input_is_a_400_naming_the_field(client, case, payload, field):
    response = client.post(URL, data=payload, content_type="application/json")
    assert response.status_code == 400, (case, response.get_json())
    body = response.get_json()
    assert body["field"] == field
    # the message quotes the key as sent (JSON-quoted), or speaks of the body as a whole
    where = json.dumps(unescape_pointer(field)[0]) if field else "request body"
    assert body["error"].startswith(f"{where}: ") and len(body["error"]) > len(where) + 2
    _validator("ErrorResponse").validate(body)


def test_naive_and_offset_timestamps_are_utc(client):
    naive = client.post(URL, json={**VALID, "event_timestamp": "2025-04-14T10:00:00"})
    offset = client.post(URL, json={**VALID, "event_timestamp": "2025-04-14T12:00:00+02:00"})
    assert naive.status_code == offset.status_code == 200
    assert naive.get_json()["features"]["hour_of_day"] == 10
    assert offset.get_json()["features"]["hour_of_day"] == 10


def test_bodies_over_the_limit_are_413(client):
    response = client.post(
        URL, data=json.dumps({**VALID, "pad": "x" * 20_000}), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["field"] == ""


def test_a_configured_token_is_required(make_app):
    app = make_app(API_TOKEN="s3cret")
    client = app.test_client()
    assert client.post(URL, json=VALID).status_code == 401
    wrong = client.post(URL, json=VALID, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.get_json()["field"] == "Authorization"
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = client.post(URL, json=VALID, headers={"Authorization": "Basic s3cret"})
    assert basic.status_code == 401
    ok = client.post(URL, json=VALID, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.get("/healthz").status_code == 200  # probes need no token


def test_a_numeric_token_from_the_environment_works(make_app, monkeypatch):
    monkeypatch.setenv("SKEWLESS_API_TOKEN", "12345")  # digits: still a token (text), not a number
    client = make_app(API_TOKEN=...).test_client()
    assert client.post(URL, json=VALID).status_code == 401
    ok = client.post(URL, json=VALID, headers={"Authorization": "Bearer 12345"})
    assert ok.status_code == 200


def test_unknown_routes_and_methods_are_json(client):
    assert client.get("/nope").status_code == 404
    response = client.get(URL)
    assert response.status_code == 405 and "POST" in response.headers["Allow"]
    assert response.get_json()["error"]


def test_the_champion_is_swapped_when_the_alias_moves(make_app, serving_env, last_day):
    """A new version gets the alias: the running app serves it within the check interval."""
    import time

    from models import registry

    mlflow, client = registry.connect(serving_env.cfg)
    app = make_app(MODEL_CHECK_SECONDS=0.2)
    http = app.test_client()
    body = score_body(last_day.iloc[0])
    assert http.post(URL, json=body).get_json()["model"]["version"] == serving_env.model_version
    new = mlflow.register_model(f"runs:/{serving_env.run_id}/model", "fraud")
    # what `skewless train` tags every version with: the threshold the sidecar decides at
    client.set_model_version_tag("fraud", new.version, registry.THRESHOLD_TAG, "0.25")
    client.set_registered_model_alias("fraud", "champion", new.version)
    try:
        deadline = time.monotonic() + 20
        served = serving_env.model_version
        while served != str(new.version) and time.monotonic() < deadline:
            time.sleep(0.25)
            served = http.post(URL, json=body).get_json()["model"]["version"]
        assert served == str(new.version)
        assert app.extensions["skewless"].model.current.threshold == 0.25
        metrics = http.get("/metrics").get_data(as_text=True)
        assert f'skewless_model_info{{name="fraud",version="{new.version}"}} 1.0' in metrics
    finally:
        client.set_registered_model_alias("fraud", "champion", serving_env.model_version)


def test_float_features_are_finite_or_null(client, last_day):
    for _, row in last_day.head(30).iterrows():
        features = client.post(URL, json=score_body(row)).get_json()["features"]
        assert all(v is None or math.isfinite(v) for v in features.values())


def test_the_fast_single_row_path_equals_booster_predict(app, transactions):
    """The C API single-row path scores exactly what Booster.predict does, NaNs included."""
    import numpy as np

    model = app.extensions["skewless"].model.current
    assert model.fast is not None
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 50, size=(500, len(model.columns)))
    rows[rng.random(rows.shape) < 0.2] = np.nan
    expected = model.booster.predict(rows)
    got = np.array([model.fast(np.ascontiguousarray(r.reshape(1, -1))) for r in rows])
    np.testing.assert_array_equal(got, expected)
