"""The sidecar benchmark's measures that need no load: the skew report over 100K logged requests and
the batch CPU per prediction (bench/sidecar.py calls them after the servers are stopped).
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import date, timedelta

from serving import log as serving_log

COPY_BATCH = 5_000
# the sidecar's request path, as "<dir>/<file>(<function>)" -> step name in the profile summary
PROFILE_STEPS = {
    "serving/scoring.py(score)": "view",
    "serving/schemas.py(parse_score_request)": "parse",
    "serving/sidecar.py(score)": "Sidecar.score",
    "serving/readers.py(read)": "features",
    "serving/model.py(predict)": "model",
    "serving/redisio.py(__call__)": "redis",
}


def served_entries(client) -> dict[str, list[dict]]:
    """The serving log's raw entries (fields as the sidecar wrote them), by mode."""
    by_mode: dict[str, list[dict]] = defaultdict(list)
    cursor = "-"
    while True:
        chunk = client.xrange(serving_log.STREAM, min=cursor, count=10_000)
        for _, fields in chunk:
            by_mode[fields[b"mode"].decode()].append(fields)
        if len(chunk) < 10_000:
            return dict(by_mode)
        cursor = "(" + chunk[-1][0].decode()


def write_log(client, entries: list[dict], count: int, prefix: str) -> None:
    """A fresh serving log of ``count`` entries: ``entries`` repeated, each with its own request
    id. Sent as packed XADD batches (serving.redisio; redis-py's pipeline is ~5x slower)."""
    from serving.redisio import round_trips

    client.delete(serving_log.STREAM)
    trips = round_trips(client)  # a single server or a cluster
    try:
        for start in range(0, count, COPY_BATCH):
            commands = []
            for k in range(start, min(start + COPY_BATCH, count)):
                fields = {**entries[k % len(entries)], b"request_id": f"{prefix}-{k}".encode()}
                flat = [part for item in fields.items() for part in item]
                commands.append(("XADD", serving_log.STREAM, "MAXLEN", "~", 2 * count, "*", *flat))
            trips(*commands)
    finally:
        trips.close()


def skew(cfg, redis_url: str, day: date, *, requests: int) -> dict:
    """Per mode served in the runs: a serving log of ``requests`` entries of that mode, then timed
    ``flush_log`` (into the warehouse) + ``skew_report`` for that day and mode."""
    from monitoring import flush
    from monitoring import skew as skew_module
    from skewless import redis_server

    client = redis_server.connect(redis_url, cluster=cfg.redis_cluster)
    out = {}
    try:
        for mode, entries in served_entries(client).items():
            distinct = len({e[b"transaction_id"] for e in entries})
            write_log(client, entries, requests, f"bench-{mode}")
            started = time.perf_counter()
            cpu = time.process_time()
            flushed = flush.flush_log(cfg, redis_url=redis_url)
            flushed_at = time.perf_counter()
            report = skew_module.skew_report(day, mode=mode, cfg=cfg)
            finished = time.perf_counter()
            out[mode] = {
                "requests": report["requests"],
                "distinct_transactions": distinct,
                "inserted": flushed["inserted"],
                "flush_seconds": round(flushed_at - started, 3),
                "report_seconds": round(finished - flushed_at, 3),
                "seconds": round(finished - started, 3),
                "cpu_seconds": round(time.process_time() - cpu, 3),
                "mismatch_causes": report["causes"],
                "decisions": report["decisions"],
            }
        client.delete(serving_log.STREAM)
    finally:
        client.close()
    return out


def batch_cpu(cfg, day: date, *, days: int) -> dict:
    """Process CPU (all threads: DuckDB's, LightGBM's) per row of the nightly fraud batch scoring
    (``models.batch_score.score("fraud", day)``) over ``days`` days ending ``day``. Each call loads the
    model, as the nightly job does; that load's CPU is also measured on its own and taken out.
    Then the model alone: the booster over the same rows' feature matrix."""
    from models import batch_score, datasets, registry
    from monitoring.skew import offline_truth
    from skewless import warehouse

    booster, *_ = registry.load_champion(cfg, "fraud")  # first load: imports, registry
    load_cpu = _cpu(registry.load_champion, cfg, "fraud")[1]
    first = day - timedelta(days=days - 1)
    rows = cpu = 0
    for offset in range(days):
        result, seconds = _cpu(batch_score.score, "fraud", first + timedelta(days=offset), cfg=cfg)
        rows, cpu = rows + result["rows"], cpu + seconds
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        ids = con.execute(
            "select transaction_id from stg_raw__transactions "
            "where event_timestamp >= ? and event_timestamp < ?",
            [first, day + timedelta(days=1)],
        ).fetchdf()["transaction_id"]
        features = offline_truth(con, ids)[datasets.feature_columns("fraud")]
    finally:
        con.close()
    _, predict_cpu = _cpu(
        datasets.predict, booster, features, num_threads=batch_score.PREDICT_THREADS
    )
    return {
        "rows": rows,
        "days": days,
        "cpu_seconds": round(cpu, 3),
        "model_load_cpu_seconds": round(load_cpu, 3),
        "cpu_us_per_row": round(cpu / rows * 1e6, 2),
        "cpu_us_per_row_excl_load": round((cpu - days * load_cpu) / rows * 1e6, 2),
        "model_only_rows": len(features),
        "model_only_cpu_us_per_row": round(predict_cpu / max(len(features), 1) * 1e6, 2),
    }


def _cpu(fn, *args, **kwargs):
    started = time.process_time()
    value = fn(*args, **kwargs)
    return value, time.process_time() - started


def _function(key: tuple, root: str) -> str:
    path = key[0].split("site-packages/")[-1].removeprefix(root)
    return f"{path}:{key[1]}({key[2]})"


def profile(cfg, redis_url: str, bodies: list[dict], modes: list[str], *, requests: int) -> dict:
    """Per mode, in this process through Flask's test client (no gunicorn, no sockets but Redis):
    CPU per request, then where it goes - cProfile on a CPU clock, the top functions by own time
    and the sidecar's main steps by cumulative time (profiler overhead included)."""
    import cProfile
    import json
    import pstats

    from serving.app import create_app

    app = create_app({"SETTINGS": cfg, "REDIS_URL": redis_url, "MODEL_CHECK_SECONDS": 0})
    client = app.test_client()
    root = str(cfg.feast_repo.parent) + "/"
    out = {}

    def post(payload: str) -> None:
        answer = client.post("/v1/fraud/score", data=payload, content_type="application/json")
        if answer.status_code != 200:
            raise RuntimeError(f"profile: HTTP {answer.status_code} {answer.data[:200]!r}")

    def us(seconds: float) -> float:
        return round(seconds / requests * 1e6, 1)

    try:
        for mode in modes:
            payloads = [json.dumps({**b, "mode": mode}) for b in bodies]
            for i in range(200):
                post(payloads[i % len(payloads)])
            cpu = time.process_time()
            for i in range(requests):
                post(payloads[i % len(payloads)])
            plain = (time.process_time() - cpu) / requests * 1e6
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            for i in range(requests):
                post(payloads[i % len(payloads)])
            profiler.disable()
            stats = pstats.Stats(profiler).stats
            steps = {}
            for key, (_, _, _, cumulative, _) in stats.items():
                step = PROFILE_STEPS.get(f"{'/'.join(key[0].split('/')[-2:])}({key[2]})")
                if step:
                    steps[step] = us(cumulative)
            top = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:15]
            out[mode] = {
                "requests": requests,
                "cpu_us_per_request": round(plain, 1),
                "steps_cum_us": steps,
                "top_own_us": [
                    {
                        "function": _function(key, root),
                        "calls_per_request": round(calls / requests, 2),
                        "own_us": us(own),
                        "cum_us": us(cumulative),
                    }
                    for key, (_, calls, own, cumulative, _) in top
                ],
            }
    finally:
        app.extensions["skewless"].close()
    return out
