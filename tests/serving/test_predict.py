"""The realtime form of a predictive query scores through the sidecar's own path."""

from __future__ import annotations

from datetime import date

import pytest

from serving import log as serving_log
from skewless import pql, predict

pytestmark = pytest.mark.slow  # on the built pipeline (dbt, Feast, MLflow)


@pytest.mark.parametrize("mode", ["materialized", "exact"])
def test_for_a_transaction_equals_post_score(serving_env, transactions, client, redis_client, mode):
    rows = transactions[transactions["event_timestamp"] < serving_env.cutoff].tail(3)
    ids = tuple(rows["transaction_id"])
    quoted = ", ".join(f"'{i}'" for i in ids)
    query = pql.parse(f"PREDICT fraud_probability FOR transactions.transaction_id IN ({quoted})")
    result = predict.run(query, serving_env.cfg, mode=mode, redis_url=serving_env.redis_url)
    assert result.path == "realtime" and list(result.rows["transaction_id"]) == list(ids)

    bodies = predict.transactions(serving_env.cfg, ids)
    for body, row in zip(bodies, result.rows.itertuples(), strict=True):
        answer = client.post("/v1/fraud/score", json={**body, "mode": mode})
        assert answer.status_code == 200
        scored = answer.get_json()
        assert scored["fraud_probability"] == row.fraud_probability
        assert (scored["decision"], scored["mode"]) == (row.decision, mode)
        assert scored["model"]["version"] == row.model_version

    # logged like every scored request: the query's requests and the POSTs, one entry each
    logged = serving_log.read_raw(redis_client)
    assert set(result.rows["request_id"]) <= set(logged["request_id"])
    assert len(logged["request_id"]) == 2 * len(ids)


def test_an_unknown_transaction_is_named(serving_env):
    query = pql.parse("PREDICT fraud FOR transactions.transaction_id IN ('nope', 'nada')")
    with pytest.raises(predict.PredictError, match="no transaction 'nope', 'nada'"):
        predict.run(query, serving_env.cfg, redis_url=serving_env.redis_url)


# -- POST /v1/predict: the same queries on the sidecar ----------------------------------------------


def test_post_predict_scores_the_events_it_is_sent(serving_env, transactions, client):
    rows = transactions[transactions["event_timestamp"] < serving_env.cutoff].tail(2)
    ids = tuple(rows["transaction_id"])
    events = predict.transactions(serving_env.cfg, ids)
    query = f"PREDICT fraud_probability FOR transactions.transaction_id IN ('{ids[0]}', '{ids[1]}')"
    answer = client.post(
        "/v1/predict",
        json={"query": query, "mode": "exact", "events": events[::-1]},  # any order
        headers={"X-Request-ID": "q-1"},
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["task"], body["path"], body["query"]) == ("fraud", "realtime", query)
    got = body["predictions"]
    assert [p["transaction_id"] for p in got] == list(ids)  # the query's order
    assert [p["request_id"] for p in got] == ["q-1.0", "q-1.1"]
    assert answer.headers["X-Request-ID"] == "q-1"
    for event, prediction in zip(events, got, strict=True):
        scored = client.post("/v1/fraud/score", json={**event, "mode": "exact"}).get_json()
        assert scored["fraud_probability"] == prediction["fraud_probability"]
        assert scored["features"] == prediction["features"]
        assert prediction["mode"] == "exact"


def test_post_predict_looks_up_nightly_scores(client, serving_env):
    import numpy as np

    from models.batch_score import write_scores_to_redis

    write_scores_to_redis(
        serving_env.redis_url, "churn_30d", np.array(["c1", "c2"], dtype=object),
        np.array([0.25, 0.5]), "3", date(2025, 4, 14),
    )  # fmt: skip
    answer = client.post(
        "/v1/predict",
        json={"query": "PREDICT churn FOR customers.customer_id IN ('c2', 'c1', 'c2')"},
    )
    assert answer.status_code == 200
    assert answer.get_json()["predictions"] == [
        client.get(f"/v1/customers/{i}/churn").get_json() for i in ("c2", "c1")
    ]
    missing = client.post(
        "/v1/predict", json={"query": "PREDICT churn FOR customers.customer_id = 'x'"}
    )
    assert missing.status_code == 404 and missing.get_json()["field"] == "/query"


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"query": "PREDICT churn FOR EACH customers.customer_id"}, "/query", "skewless predict"),
        ({"query": "PREDICT churn FOR users.user_id = 'u'"}, "/query", "unknown table 'users'"),
        ({"query": "PREDICT fraud FOR transactions.transaction_id = 't1'"}, "/events", "required"),
        (
            {"query": "PREDICT churn FOR customers.customer_id = 'c1'", "events": []},
            "/events",
            "batch task",
        ),  # fmt: skip
        (
            {"query": "PREDICT fraud FOR transactions.transaction_id = 't1'", "events": []},
            "/events",
            "no event for 't1'",
        ),  # fmt: skip
        ({"query": "", "events": None}, "/query", "at least 1 character"),
        (
            {"query": "PREDICT churn FOR customers.customer_id = 'c1'", "limit": 3},
            "/limit",
            "unknown field",
        ),  # fmt: skip
        (
            {"query": "PREDICT churn FOR customers.customer_id = 'c1'", "mode": "exact"},
            "/mode",
            "batch task",
        ),  # fmt: skip
        (
            {"query": f"PREDICT churn FOR customers.customer_id = '{'c' * 129}'"},
            "/query",
            "longer than 128 characters",
        ),  # fmt: skip
    ],
)
def test_post_predict_errors_name_the_field(client, body, field, says):
    answer = client.post("/v1/predict", json=body)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field
    assert says in answer.get_json()["error"]


def test_post_predict_refuses_an_event_the_query_does_not_name(client, transactions, serving_env):
    (event,) = predict.transactions(serving_env.cfg, (transactions["transaction_id"].iloc[0],))
    answer = client.post(
        "/v1/predict",
        json={
            "query": "PREDICT fraud FOR transactions.transaction_id = 'other'",
            "events": [event],
        },
    )
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "/events/0/transaction_id"
