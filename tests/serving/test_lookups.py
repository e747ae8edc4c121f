"""GET /v1/customers/<id>/churn: the nightly batch score, as models/batch_score.py writes it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from models.batch_score import write_scores_to_redis

pytestmark = pytest.mark.slow  # on the built pipeline (dbt, Feast, MLflow)

URL = "/v1/customers/{}/churn"


def test_returns_the_batch_score_written_by_batch_scoring(client, serving_env):
    ids = np.array(["c00001", "c00002", "ü-42"], dtype=object)
    scores = np.array([0.125, 0.9, 0.0])
    assert (
        write_scores_to_redis(
            serving_env.redis_url, "churn_30d", ids, scores, "7", date(2025, 4, 14)
        )
        == 3
    )
    response = client.get(URL.format("c00002"))
    assert response.status_code == 200
    assert response.get_json() == {
        "customer_id": "c00002",
        "churn_probability": 0.9,
        "score_date": "2025-04-14",
        "model": {"name": "churn_30d", "version": "7"},
    }
    assert client.get(URL.format("ü-42")).get_json()["churn_probability"] == 0.0


def test_unknown_customers_are_404_and_long_ids_400(client):
    response = client.get(URL.format("nobody"))
    assert response.status_code == 404
    assert response.get_json()["field"] == "customer_id"
    too_long = client.get(URL.format("c" * 129))
    assert too_long.status_code == 400 and too_long.get_json()["field"] == "customer_id"


def test_needs_the_token_when_one_is_configured(make_app):
    client = make_app(API_TOKEN="t0k3n").test_client()
    assert client.get(URL.format("c00001")).status_code == 401
    found = client.get(URL.format("nobody"), headers={"Authorization": "Bearer t0k3n"})
    assert found.status_code == 404


def test_redis_down_is_503(make_app):
    from tests.helpers import free_port

    client = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.get(URL.format("c00001"))
    assert response.status_code == 503 and response.get_json()["reason"].startswith("redis")
