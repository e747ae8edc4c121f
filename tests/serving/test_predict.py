"""The realtime form of a predictive query scores through the sidecar's own path."""

from __future__ import annotations

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
