"""/healthz, /readyz, /metrics and /openapi.json."""

from __future__ import annotations

import jsonschema
import pytest

from tests.helpers import free_port, score_body

pytestmark = pytest.mark.slow  # on the built pipeline (dbt, Feast, MLflow)


def test_liveness(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_ready_with_redis_and_a_model(client, serving_env):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "mode": "materialized",
        "model": {"name": "fraud", "version": serving_env.model_version},
    }


def test_not_ready_without_redis(make_app):
    client = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "not ready" and body["reason"].startswith("redis:")
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_not_ready_without_a_model(make_app, transactions):
    client = make_app(LOAD_MODEL=False).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["reason"].startswith("model:")
    scored = client.post("/v1/fraud/score", json=score_body(transactions.iloc[-1]))
    assert scored.status_code == 503 and scored.get_json()["reason"].startswith("model:")


def _samples(client) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_count_requests_by_mode_and_status_and_name_the_model(
    client, transactions, serving_env
):
    # deltas: once feast is imported, prometheus_client runs in multiprocess mode in this
    # process (feast.metrics sets PROMETHEUS_MULTIPROC_DIR) and apps share values
    before = _samples(client)
    row = transactions.iloc[-1]
    assert client.post("/v1/fraud/score", json=score_body(row)).status_code == 200
    assert client.post("/v1/fraud/score", json=score_body(row, mode="exact")).status_code == 200
    assert client.post("/v1/fraud/score", data="{").status_code == 400
    after = _samples(client)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    score = {"endpoint": "/v1/fraud/score"}
    assert delta("skewless_requests_total", **score, mode="materialized", status="200") == 1
    assert delta("skewless_requests_total", **score, mode="exact", status="200") == 1
    assert delta("skewless_requests_total", **score, mode="materialized", status="400") == 1
    assert delta("skewless_request_seconds_count", **score, mode="exact", status="200") == 1
    assert delta("skewless_feature_read_seconds_count", mode="materialized") == 1
    assert delta("skewless_feature_read_seconds_count", mode="exact") == 1
    version = serving_env.model_version
    assert after[("skewless_model_info", (("name", "fraud"), ("version", version)))] == 1


def test_metrics_export_the_newest_skew_report_of_each_mode(client, serving_env):
    """The files the skew_report DAG writes (monitoring/skew_publish.report_paths), newest day
    per mode, as gauges per feature and mode; the anomalies by gating."""
    from monitoring import skew_publish

    def report(mode: str, day: str, match: float, anomalies: list) -> dict:
        features = {
            "customer_tx_count_1h": {"match_rate": match, "js_divergence": 0.01, "psi": None}
        }
        return {"mode": mode, "date": day, "features": features, "anomalies": anomalies}

    stale = {"feature": "customer_tx_count_1h", "metric": "match_rate", "gate": True}
    written = [
        skew_publish.write_json(report(mode, day, match, found), skew_publish.report_paths(
            serving_env.cfg, mode, day)[0])
        for mode, day, match, found in (
            ("materialized", "2025-04-13", 0.1, []),  # older: not exported
            ("materialized", "2025-04-14", 0.6, [stale, stale | {"gate": False}]),
            ("exact", "2025-04-14", 1.0, []),
        )
    ]  # fmt: skip
    try:
        samples = _samples(client)
    finally:
        for path in written:
            path.unlink()

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    one = {"feature": "customer_tx_count_1h"}
    assert value("skewless_skew_match_rate", **one, mode="materialized") == 0.6
    assert value("skewless_skew_match_rate", **one, mode="exact") == 1.0
    assert value("skewless_skew_js_divergence", **one, mode="exact") == 0.01
    assert (
        "skewless_skew_psi",
        (("feature", "customer_tx_count_1h"), ("mode", "exact")),
    ) not in samples
    assert value("skewless_skew_anomalies", mode="materialized", gating="true") == 1
    assert value("skewless_skew_anomalies", mode="materialized", gating="false") == 1
    assert value("skewless_skew_anomalies", mode="exact", gating="true") == 0
    assert value("skewless_skew_report_day_seconds", mode="exact") == 1744588800  # 2025-04-14
    # without reports: no skew samples, and /metrics still answers
    assert not any(name.startswith("skewless_skew_") for name, _ in _samples(client))


def test_openapi_is_a_valid_3_1_document_of_every_route(client, app):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    routes = {
        rule.rule.replace("<customer_id>", "{customer_id}")
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert routes == set(doc["paths"])
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    request = doc["components"]["schemas"]["ScoreRequest"]
    assert request["additionalProperties"] is False
    assert set(request["required"]) == {
        "transaction_id", "customer_id", "merchant_id", "amount", "event_timestamp"
    }  # fmt: skip
    features = doc["components"]["schemas"]["FraudFeatures"]["properties"]
    from models.datasets import feature_columns

    assert list(features) == feature_columns("fraud")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_probes_need_no_token(make_app, path):
    client = make_app(API_TOKEN="secret").test_client()
    assert client.get(path).status_code == 200


def test_openapi_request_example_is_accepted(client):
    doc = client.get("/openapi.json").get_json()
    example = doc["components"]["schemas"]["ScoreRequest"]["examples"][0]
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/ScoreRequest", "components": doc["components"]}
    )
    validator.validate(example)
    assert client.post("/v1/fraud/score", json=example).status_code == 200


def test_openapi_error_examples_are_what_the_server_answers(client):
    """The published 400 examples: a negative amount, an unknown key with a '/' in it."""
    doc = client.get("/openapi.json").get_json()
    amount, unknown = doc["components"]["schemas"]["ErrorResponse"]["examples"]
    example = doc["components"]["schemas"]["ScoreRequest"]["examples"][0]
    assert client.post("/v1/fraud/score", json={**example, "amount": -1}).get_json() == amount
    assert client.post("/v1/fraud/score", json={**example, "a/b": 1}).get_json() == unknown
    assert (
        "RFC 6901"
        in doc["components"]["schemas"]["ErrorResponse"]["properties"]["field"]["description"]
    )


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_openapi_requires_a_token_only_when_one_is_configured(make_app, token):
    doc = make_app(API_TOKEN=token).test_client().get("/openapi.json").get_json()
    for path, method in (("/v1/fraud/score", "post"), ("/v1/customers/{customer_id}/churn", "get")):
        operation = doc["paths"][path][method]
        assert ("security" in operation) is (token is not None), path
        assert ("401" in operation["responses"]) is (token is not None), path
    assert ("securitySchemes" in doc["components"]) is (token is not None)
