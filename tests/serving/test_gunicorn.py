"""Integration: `skewless serve` (gunicorn, gthread, preload, 2 workers) on a free loopback port with
the real Redis and the trained champion; stopped by its process group, leaving nothing behind."""

from __future__ import annotations

import http.client
import json
import os

import pytest

from tests.helpers import (
    clear_sidecar_keys,
    http_get,
    running_sidecar,
    score_body,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(serving_env, tmp_path_factory):
    with running_sidecar(serving_env, tmp_path_factory, "gunicorn") as (port, proc, log_path):
        yield {"port": port, "proc": proc, "log": log_path}
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no worker survived its master
    import redis

    client = redis.Redis.from_url(serving_env.redis_url)
    clear_sidecar_keys(client)
    client.close()


def test_serves_the_contract_over_http(server, transactions, serving_env):
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=5)
    headers = {"Content-Type": "application/json"}
    try:
        for _, row in transactions.tail(50).iterrows():
            for mode in ("materialized", "exact"):
                conn.request(
                    "POST", "/v1/fraud/score", json.dumps(score_body(row, mode=mode)), headers
                )
                response = conn.getresponse()
                body = json.loads(response.read())
                assert response.status == 200, body
                assert response.getheader("Connection", "keep-alive").lower() != "close"
                assert body["mode"] == mode and body["transaction_id"] == row["transaction_id"]
                assert body["model"] == {"name": "fraud", "version": serving_env.model_version}
        conn.request("POST", "/v1/fraud/score", '{"amount": -1}', headers)
        response = conn.getresponse()
        assert response.status == 400 and json.loads(response.read())["field"]
        conn.request("POST", "/v1/fraud/score", "x" * 20_000, headers)
        response = conn.getresponse()
        assert response.status == 413
        response.read()
    finally:
        conn.close()
    status, text = http_get(server["port"], "/metrics")
    assert status == 200
    # multiprocess metrics: the counts of both workers, the model of each live worker
    assert (
        b'skewless_requests_total{endpoint="/v1/fraud/score",mode="exact",status="200"} 50.0'
        in text
    )
    assert b'skewless_model_info{name="fraud",version="' in text
    status, doc = http_get(server["port"], "/openapi.json")
    assert status == 200 and json.loads(doc)["openapi"].startswith("3.1")


def test_sustained_keep_alive_traffic(server, transactions):
    """1,000 back-to-back requests per mode on one keep-alive connection: every one is answered
    200 (timings belong to `make bench`, not here)."""
    rows = [score_body(row) for _, row in transactions.tail(500).iterrows()]
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=5)
    headers = {"Content-Type": "application/json"}
    try:
        for mode in ("materialized", "exact"):
            payloads = [json.dumps({**r, "mode": mode}) for r in rows]
            for i in range(1000):
                conn.request("POST", "/v1/fraud/score", payloads[i % len(payloads)], headers)
                response = conn.getresponse()
                body = response.read()
                assert response.status == 200, body
    finally:
        conn.close()
