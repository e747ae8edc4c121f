"""The sidecar, the replay, the serving log and the churn scores on a real Redis Cluster: three
redis-server primaries, SKEWLESS_REDIS_CLUSTER=true. What one server serves, the cluster serves:
through two replicas, a resharding, a node frozen, killed and restarted, and failovers (on clusters
of their own, with replicas). The stream consumer on a cluster: test_streaming.py."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
from datetime import date, datetime, timedelta

import numpy as np
import pytest
import redis

from serving.readers import MaterializedReader
from serving.redisio import ClusterRoundTrips, round_trips, script
from serving.state import state_key
from skewless import dependencies, feast_layout, redis_server, settings
from skewless.feast_layout import feast_project
from skewless.features import FEATURE_SERVICES
from tests.helpers import (
    clear_sidecar_keys,
    fresh_cluster,
    running_sidecar,
    score_body,
    stop_group,
    wait_until,
)

FRAUD_V1 = next(s for s in FEATURE_SERVICES if s.name == "fraud_v1")
FAULT_BODY = {
    "customer_id": "c-fault",
    "merchant_id": "m-fault",
    "amount": 25.0,
    "event_timestamp": "2025-04-14T12:00:00Z",
}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_env(serving_env, redis_cluster_url):
    """The serving env on the emptied cluster, with the same features materialized into it."""
    from skewless import pipeline

    url = fresh_cluster(redis_cluster_url)
    cfg = dataclasses.replace(serving_env.cfg, redis_cluster=True)
    pipeline.materialize(cfg, end=serving_env.cutoff, redis_url=url)
    yield dataclasses.replace(serving_env, cfg=cfg, redis_url=url)
    fresh_cluster(url)


@pytest.fixture
def cluster_client(cluster_env):
    client = redis_server.connect(cluster_env.redis_url, cluster=True)
    clear_sidecar_keys(client)
    yield client
    clear_sidecar_keys(client)
    client.close()


def _primaries(client) -> list[redis.Redis]:
    return [redis.Redis(host=n.host, port=n.port) for n in client.get_primaries()]


def test_features_spread_over_the_nodes_and_read_as_on_one_server(
    cluster_env, serving_env, cluster_client, transactions
):
    nodes = _primaries(cluster_client)
    assert len(nodes) == 3
    assert all(node.dbsize() > 0 for node in nodes)  # Feast's keys landed on every primary
    project, _ = feast_project(settings.PROJECT_ROOT / "feature_repo")
    single = redis.Redis.from_url(serving_env.redis_url)
    on_server = MaterializedReader(single, FRAUD_V1, project)
    on_cluster = MaterializedReader(cluster_client, FRAUD_V1, project)
    assert isinstance(on_cluster.round_trip, ClusterRoundTrips)
    pairs = transactions[["customer_id", "merchant_id"]].drop_duplicates().head(60)
    slots = set()
    for customer, merchant in pairs.itertuples(index=False):
        keys = {"customer_id": customer, "merchant_id": merchant}
        expected = on_server.read_raw(keys)
        assert all(values is not None for _, values in expected.values())
        assert on_cluster.read_raw(keys) == expected
        slots.add(cluster_client.keyslot(feast_layout.entity_key("customer_id", customer, project)))
    assert len(slots) > 1
    single.close()
    for node in nodes:
        node.close()


def test_a_batch_crosses_nodes_in_order_and_an_error_reply_raises(cluster_client):
    trips = round_trips(cluster_client)
    keys = [f"skewless:test:{i}" for i in range(30)]
    assert len({cluster_client.keyslot(k) for k in keys}) > 3
    replies = trips(*[("SET", k, i) for i, k in enumerate(keys)], *[("GET", k) for k in keys])
    assert replies[30:] == [str(i).encode() for i in range(30)]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        trips(("SET", keys[0], "x"), ("HGET", keys[0], "f"), ("SET", keys[1], "y"))
    assert trips(("GET", keys[1])) == [b"y"]  # every reply was read: the connection is usable
    with pytest.raises(ValueError, match="span hash slots"):
        trips(("EVAL", "return 1", 2, keys[0], keys[1]))
    trips.close()


def test_a_script_is_loaded_on_each_node_that_lacks_it_and_runs_once(cluster_client):
    trips = round_trips(cluster_client)
    incr = script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    keys = [f"skewless:test:script:{i}" for i in range(12)]
    assert len({cluster_client.keyslot(k) for k in keys}) > 3
    for node in _primaries(cluster_client):
        node.script_flush()
        node.close()
    for expected in (1, 2):  # NOSCRIPT on every node, then known everywhere
        replies = trips(*[(*incr, 1, k, 1) for k in keys], ("SET", "skewless:test:x", expected))
        assert replies == [expected] * len(keys) + [b"OK"]
    assert [int(cluster_client.get(k)) for k in keys] == [2] * len(keys)
    trips.close()


def _node_id(node: redis.Redis) -> str:
    return node.execute_command("CLUSTER", "MYID").decode()


def _migrate_slot(client, slot: int) -> tuple[redis.Redis, redis.Redis]:
    """Starts moving a hash slot to another primary as ``redis-cli --cluster reshard`` does:
    IMPORTING on the target, MIGRATING on the source, MIGRATE its keys. Until _assign_slot the
    source answers ASK for the moved keys. Returns (source, target)."""
    owner = client.nodes_manager.get_node_from_slot(slot)
    nodes = _primaries(client)
    source = next(n for n in nodes if n.connection_pool.connection_kwargs["port"] == owner.port)
    target = next(n for n in nodes if n is not source)
    source_id, target_id = _node_id(source), _node_id(target)
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    kwargs = target.connection_pool.connection_kwargs
    source.execute_command("MIGRATE", kwargs["host"], kwargs["port"], "", 0, 5000, "KEYS", *keys)
    for node in nodes:
        if node not in (source, target):
            node.close()
    return source, target


def _assign_slot(client, slot: int, target: redis.Redis) -> None:
    """Ends a migration: every primary learns the slot's new owner (the target first)."""
    target_id = _node_id(target)
    target.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    for node in _primaries(client):
        node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        node.close()


def test_the_sidecar_follows_a_resharding(make_app, cluster_env, cluster_client, transactions):
    """The customer's Feast hash moves to another node while the sidecar serves: mid-migration
    the old owner answers ASK, afterwards MOVED; either way the same features are served."""
    app = make_app(REDIS_URL=cluster_env.redis_url, SETTINGS=cluster_env.cfg)
    client = app.test_client()
    row = transactions.iloc[len(transactions) // 2]
    project, _ = feast_project(settings.PROJECT_ROOT / "feature_repo")
    key = feast_layout.entity_key("customer_id", str(row["customer_id"]), project)
    slot = cluster_client.keyslot(key)

    def served(n: int) -> dict:
        body = score_body(row, transaction_id=f"reshard-{n}")
        response = client.post("/v1/fraud/score", json=body)
        assert response.status_code == 200, response.get_json()
        result = response.get_json()
        assert result["mode"] == "materialized" and result["features_missing"] == []
        return result["features"]

    before = served(0)
    source, target = _migrate_slot(cluster_client, slot)

    def count(node):  # EXISTS would be answered by ASK / MOVED mid-migration
        return node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)

    assert count(source) == 0 and count(target) >= 1
    assert served(1) == before  # ASK: ASKING + HMGET on the importing node
    _assign_slot(cluster_client, slot, target)
    assert served(2) == before  # MOVED: the slot map is reloaded
    owner = app.extensions["skewless"].redis.nodes_manager.get_node_from_slot(slot)
    assert owner.port == target.connection_pool.connection_kwargs["port"]
    source.close()
    target.close()


@pytest.fixture(scope="module")
def sidecars(serving_env, cluster_env, tmp_path_factory):
    """`skewless serve` on the single server; two replicas of it on the cluster."""
    with (
        running_sidecar(serving_env, tmp_path_factory, "on-server") as (server, _, _),
        running_sidecar(cluster_env, tmp_path_factory, "on-cluster-a") as (replica_a, _, _),
        running_sidecar(cluster_env, tmp_path_factory, "on-cluster-b") as (replica_b, _, _),
    ):
        yield {
            "server": [f"http://127.0.0.1:{server}"],
            "cluster": [f"http://127.0.0.1:{port}" for port in (replica_a, replica_b)],
        }


@pytest.mark.parametrize("mode", ["exact", "materialized"])
def test_a_replayed_day_is_served_alike_on_the_cluster(
    mode, sidecars, serving_env, cluster_env, redis_client, cluster_client, tmp_path
):
    """The same day replayed through one sidecar on a server and through two replicas on the
    cluster taking turns (a round-robin balancer): per transaction the same features, score,
    decision and missing entities. The cluster's log flushes and reports like a server's."""
    from monitoring import skew
    from monitoring.flush import flush_log
    from serving.log import read_log
    from skewless.replay import replay

    logs = {}
    for name, env, client in (
        ("server", serving_env, redis_client),
        ("cluster", cluster_env, cluster_client),
    ):
        summary = replay(mode=mode, url=sidecars[name], cfg=env.cfg, redis_url=env.redis_url)
        assert summary["sent"] == summary["ok"] > 10 and summary["errors"] == {}, summary
        logs[name] = read_log(client).set_index("transaction_id").sort_index()
        if name == "cluster":
            per_replica = summary["ok_per_url"]
            assert sorted(per_replica) == sorted(sidecars["cluster"]), per_replica
            assert min(per_replica.values()) >= summary["sent"] // 2
    server, cluster = logs["server"], logs["cluster"]
    assert list(cluster.index) == list(server.index)
    for column in ("features", "features_missing", "fraud_probability", "decision", "mode"):
        assert cluster[column].tolist() == server[column].tolist(), column

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(cluster_env.cfg.warehouse_path, copy)
    cfg = dataclasses.replace(cluster_env.cfg, warehouse_path=copy)
    flushed = flush_log(cfg, redis_url=cluster_env.redis_url)
    assert flushed["inserted"] == flushed["table_rows"] == len(cluster)
    if mode == "exact":
        day = date.fromisoformat(summary["day"])
        report = skew.skew_report(day, mode="exact", cfg=cfg)
        assert report["requests"] == len(cluster)
        assert report["causes"]["staleness"] == 0 and report["causes"]["logic"] == 0


def test_churn_scores_are_written_across_nodes_and_served(make_app, cluster_env, cluster_client):
    from models.batch_score import write_scores_to_redis
    from skewless.tasks import TASKS

    ids = np.array([f"churner-{i}" for i in range(500)])
    scores = np.linspace(0.0, 1.0, len(ids))
    written = write_scores_to_redis(
        cluster_env.redis_url, "churn_30d", ids, scores, "7", date(2025, 4, 14), cluster=True
    )
    assert written == len(ids)
    nodes = _primaries(cluster_client)
    assert all(
        node.keys(f"{TASKS['churn_30d'].scores_key_prefix}*") for node in nodes
    )  # spread over every primary
    for node in nodes:
        node.close()
    app = make_app(REDIS_URL=cluster_env.redis_url, SETTINGS=cluster_env.cfg)
    answer = app.test_client().get("/v1/customers/churner-250/churn")
    assert answer.status_code == 200
    assert answer.get_json()["churn_probability"] == pytest.approx(scores[250])
    assert answer.get_json()["model"]["version"] == "7"


def test_a_redis_of_the_other_kind_is_refused_by_name(cluster_env, serving_env):
    with pytest.raises(dependencies.DependencyUnavailable, match="SKEWLESS_REDIS_CLUSTER=true"):
        dependencies.check_redis_mode(cluster_env.redis_url, cluster=False)
    with pytest.raises(dependencies.DependencyUnavailable, match="SKEWLESS_REDIS_CLUSTER=false"):
        dependencies.check_redis_mode(serving_env.redis_url, cluster=True)
    dependencies.wait_for_redis(cluster_env.redis_url, attempts=1, delay=0, cluster=True)
    with pytest.raises(ValueError, match="only database 0"):
        redis_server.connect(cluster_env.redis_url.rsplit("/", 1)[0] + "/3", cluster=True)
    single_db0 = serving_env.redis_url.rsplit("/", 1)[0] + "/0"
    with pytest.raises(redis.ConnectionError, match="SKEWLESS_REDIS_CLUSTER=true"):
        redis_server.connect(single_db0, cluster=True)  # "Cluster mode is not enabled"


def test_a_frozen_or_dead_node_is_a_503_and_the_cluster_recovers(make_app, cluster_env, tmp_path):
    """On a cluster of its own: the node holding the customer's events freezes (SIGSTOP), then
    dies, then restarts on its port with its cluster config. Meanwhile the sidecar answers 503
    with a Redis reason (never a 500, never a hang); afterwards 200 again, without a restart."""
    directory = tmp_path / "cluster"
    server = redis_server.start(directory, cluster=True)
    restarted = None
    try:
        app = make_app(
            REDIS_URL=server.url, SETTINGS=cluster_env.cfg, SERVING_MODE="exact", REDIS_TIMEOUT=0.1
        )
        client = app.test_client()
        statuses = []

        def score(n: int):
            body = {**FAULT_BODY, "transaction_id": f"fault-{n}"}
            response = client.post("/v1/fraud/score", json=body)
            statuses.append(response.status_code)
            return response

        assert score(0).status_code == 200
        key = state_key("customer", FAULT_BODY["customer_id"])
        slot = app.extensions["skewless"].redis.keyslot(key)
        owner = app.extensions["skewless"].redis.nodes_manager.get_node_from_slot(slot)
        pid = server.pids[server.ports.index(owner.port)]

        os.killpg(pid, signal.SIGSTOP)  # accepts connections, never answers: the reply timeout
        try:
            frozen = score(1)
        finally:
            os.killpg(pid, signal.SIGCONT)
        assert frozen.status_code == 503 and frozen.get_json()["reason"].startswith("redis:")
        wait_until(lambda: score(2).status_code == 200, timeout=10)

        stop_group(pid)  # refused connections: the slot map is reloaded once, then a 503
        down = score(3)
        assert down.status_code == 503 and down.get_json()["reason"].startswith("redis:")
        assert client.get("/readyz").status_code == 503

        node_dir = directory / f"node-{owner.port}"
        restarted = subprocess.Popen(
            [redis_server.find_binary(), "--bind", "127.0.0.1", "--port", str(owner.port),
             "--save", "", "--appendonly", "no", "--dir", str(node_dir), "--cluster-enabled",
             "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: score(4).status_code == 200, timeout=60, interval=0.2)
        assert client.get("/readyz").status_code == 200
        assert set(statuses) == {200, 503}  # never a 500
    finally:
        if restarted is not None:
            stop_group(restarted)
        redis_server.stop(directory)


def test_failovers_are_followed_without_a_restart(make_app, cluster_env, tmp_path):
    """A cluster with a replica per primary (node timeout 1 s). The primary holding the customer's
    events hands over to its replica (CLUSTER FAILOVER, as in maintenance); then that new primary
    dies and the cluster promotes the old one by itself. The sidecar follows both without a
    restart (503s only while no node owns the slot), and the events recorded before each failover
    are still there."""
    directory = tmp_path / "cluster"
    server = redis_server.start(directory, cluster=True, replicas=1, node_timeout_ms=1000)
    nodes = []
    try:
        app = make_app(
            REDIS_URL=server.url, SETTINGS=cluster_env.cfg, SERVING_MODE="exact", REDIS_TIMEOUT=0.1
        )
        client = app.test_client()
        statuses = []
        start = datetime(2025, 4, 14, 12)

        def score(n: int):
            at = (start + timedelta(seconds=n)).isoformat() + "Z"
            body = {**FAULT_BODY, "transaction_id": f"failover-{n}", "event_timestamp": at}
            response = client.post("/v1/fraud/score", json=body)
            statuses.append(response.status_code)
            return response

        assert score(0).status_code == 200
        sidecar = app.extensions["skewless"]
        slot = sidecar.redis.keyslot(state_key("customer", FAULT_BODY["customer_id"]))
        owner = sidecar.redis.nodes_manager.get_node_from_slot(slot)
        primary = redis.Redis(host=owner.host, port=owner.port)
        replica = redis.Redis(host=owner.host, port=primary.info("replication")["slave0"]["port"])
        nodes += [primary, replica]

        assert primary.execute_command("WAIT", 1, 5000) == 1  # the event reached the replica
        replica.execute_command("CLUSTER", "FAILOVER")
        wait_until(lambda: replica.info("replication")["role"] == "master", timeout=20)
        handed_over = score(1)
        assert handed_over.status_code == 200, handed_over.get_json()
        assert handed_over.get_json()["features"]["customer_tx_count_1h"] == 1

        assert replica.execute_command("WAIT", 1, 5000) == 1
        port = replica.connection_pool.connection_kwargs["port"]
        stop_group(server.pids[server.ports.index(port)])
        n = iter(range(2, 100_000))
        last = wait_until(
            lambda: (r := score(next(n))).status_code == 200 and r, timeout=60, interval=0.2
        )
        assert last.get_json()["features"]["customer_tx_count_1h"] == 2  # both survived
        assert primary.info("replication")["role"] == "master"  # promoted back
        assert set(statuses) <= {200, 503}  # never a 500
    finally:
        for node in nodes:
            node.close()
        redis_server.stop(directory)
