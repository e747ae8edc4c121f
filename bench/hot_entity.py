"""Exact mode with a hot entity: one merchant with N events in its 30-day window beside ordinary traffic.

Real merchants are heavy-tailed: a large one sees millions of card transactions a month. Exact mode
keeps an entity's windows as tiles in Redis plus the raw events and labels of its lateness
allowance, and computes its windows at request time from a fixed number of tiles; what a request
costs with a hot entity, against the same run's ordinary entities, and what the entity costs in
Redis memory, is what this measures.

1. Setup as `bench.sidecar` (its own var dir with a private Redis; a small simulated warehouse, dbt
   build, feast apply, the fraud champion trained at the batch cutoff); the exact-mode state
   bootstrapped with what had arrived before the held-out day, as `skewless replay` does.
2. `skewless serve --mode exact` (gunicorn, 2 workers) in its own process group.
3. For each N (``--events``, ascending): the hot merchant's state is loaded with N events spread
   over the 30 days before the day (random customers and amounts, labels known after 7 days), and
   Redis' own `MEMORY USAGE` of its keys (tiles, raw events, labels) is read. Then, with `bench/loadgen.py` in a separate process: one
   keep-alive connection, closed loop (per-request latency), for the day's requests sent to the hot
   merchant and, in the same round, the same requests to their own (ordinary) merchants; then the
   open loop at ``--rate`` for both, unless the hot runs show the server cannot keep that rate.
   Every request is scored and recorded, so the hot merchant's state grows by the requests sent.

Writes var/bench/hot_entity.json and prints a table: `python -m bench.hot_entity` (--help).
Targets (at 1M events): exact-mode p99 <= 5 ms and <= 1.5x the ordinary p99 of the same run;
<= 1 MB of Redis for the hot merchant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench import procs, sidecar_setup
from bench.features import machine, save
from bench.sidecar_load import SCORE_PATH, bootstrap_exact, loadgen, redis_client
from bench.sidecar_setup import PROJECT_ROOT, RUN_DIR

DEFAULT_OUT = PROJECT_ROOT / "var" / "bench" / "hot_entity.json"
HOT = "m_hot"
WINDOW = timedelta(days=30)
TARGET_P99_MS, TARGET_RATIO, TARGET_BYTES = 5.0, 1.5, 1 << 20


def fill_hot(client, day, events: int, seed: int, lateness: timedelta) -> int:
    """(Re)loads the hot merchant with ``events`` events spread over the 30 days before the day
    (customers from a pool of 1,000, random amounts, labels known after 7 days, 1% fraud) through
    the state's bulk load, as exact mode keeps them: tiles, plus the raw events and labels of the
    lateness allowance. Returns the number of raw events kept."""
    import numpy as np
    import pandas as pd

    from serving.state import ExactState

    state = ExactState(client, lateness=lateness)
    client.delete(*state.keys("merchant", HOT))
    rng = np.random.default_rng(seed)
    start = datetime.combine(day, datetime.min.time()) - WINDOW
    at = pd.Timestamp(start) + pd.to_timedelta(
        np.sort(rng.integers(0, int(WINDOW.total_seconds() * 1e6), events)), unit="us"
    )
    label_at = at + pd.Timedelta(days=7)
    known = label_at < pd.Timestamp(start + WINDOW)
    frame = pd.DataFrame(
        {
            "transaction_id": [f"hot{i:09d}" for i in range(events)],
            "customer_id": [f"c_hot{c:04d}" for c in rng.integers(0, 1000, events)],
            "merchant_id": HOT,
            "event_timestamp": at,
            "amount": np.round(rng.lognormal(3.5, 1.0, events), 2),
            "is_fraud": pd.array(np.where(known, rng.random(events) < 0.01, None), dtype="Int8"),
            "label_timestamp": label_at.where(known),
        }
    )
    state.bootstrap(frame, as_of=start + WINDOW, clear=False)
    return raw_kept(state)


def raw_kept(state) -> int:
    """How many raw events the hot merchant's state keeps."""
    return len(state.events("merchant", HOT))


def write_bodies(bodies: list[dict], hot: bool, path: Path) -> str:
    """The day's requests, each to the hot merchant (new transaction ids) or unchanged."""
    if hot:
        bodies = [
            b | {"merchant_id": HOT, "transaction_id": f"h{b['transaction_id']}"} for b in bodies
        ]
    path.write_text(json.dumps(bodies))
    return str(path)


def measure(
    args, env: dict, port: int, pgid: int, redis, bodies: dict[str, str], duration: float
) -> dict:
    """One connection closed loop, then the open loop at --rate, for the hot and ordinary bodies."""
    result: dict = {}
    for kind in ("ordinary", "hot"):
        spec = {
            "target": {"kind": "sidecar", "port": port, "path": SCORE_PATH,
                       "bodies": bodies[kind], "mode": "exact"},
            "cpu_pgids": {"server": pgid, "redis": redis.pid},
            "run": {"kind": "max_throughput", "levels": [1], "duration": duration,
                    "warmup": 1.0, "sane_p99_ms": 1e9},
        }  # fmt: skip
        one = loadgen(spec, f"one-{kind}", env)["levels"][0]
        result[kind] = {"one_connection": _summary(one)}
    p50 = result["hot"]["one_connection"].get("p50_ms")
    capacity = args.workers * 1000 / max(p50, 1e-3) if p50 else 0.0  # None: nothing completed
    for kind in ("ordinary", "hot"):
        if capacity < args.rate * 1.25:
            result[kind]["open_loop"] = {"skipped": f"capacity ~{capacity:.0f} req/s < rate"}
            continue
        spec = {
            "target": {"kind": "sidecar", "port": port, "path": SCORE_PATH,
                       "bodies": bodies[kind], "mode": "exact"},
            "cpu_pgids": {"server": pgid, "redis": redis.pid},
            "run": {"kind": "open", "rate": args.rate, "duration": args.duration,
                    "warmup": 1.0, "connections": 8},
        }  # fmt: skip
        result[kind]["open_loop"] = _summary(loadgen(spec, f"open-{kind}", env))
    return result


def _summary(run: dict) -> dict:
    keys = ("p50_ms", "p99_ms", "requests", "errors", "throughput", "achieved_rate")
    return {k: run[k] for k in keys if k in run}


def run(args) -> dict:
    base_env = sidecar_setup.isolate_env(False)
    from skewless import redis_server, settings

    cfg = settings.load()
    sidecar_setup.fresh_run_dir(cfg)
    report: dict = {"machine": machine(), "args": vars(args) | {"out": str(args.out)}}
    report["setup_seconds"] = {}
    with procs.sigterm_as_interrupt():
        redis = redis_server.start(cfg.redis_dir, cluster=False)
        try:
            env = sidecar_setup.server_env(base_env, cfg, redis.url)
            with procs.Servers(RUN_DIR / "logs") as servers:
                day, bodies = sidecar_setup.prepare_data(cfg, args, report, redis.url)
                port = procs.free_port()
                argv = [str(sidecar_setup.BIN / "skewless"), "serve", "--mode", "exact"]
                argv += ["--port", str(port), "--workers", str(args.workers)]
                sidecar_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(cfg.var_dir / "prometheus")}
                sidecar_env["SKEWLESS_EXACT_LATENESS_SECONDS"] = str(args.lateness)
                sidecar = servers.start("sidecar", argv, sidecar_env, port=port, ready_path=None)
                servers.wait_ready(sidecar, "/readyz", timeout=240)
                client = redis_client(redis.url)
                bootstrap_exact(cfg, client, day, first=True)
                files = {
                    "ordinary": write_bodies(bodies, False, RUN_DIR / "ordinary.json"),
                    "hot": write_bodies(bodies, True, RUN_DIR / "hot.json"),
                }
                report["runs"] = _rounds(args, env, sidecar, redis, client, day, files)
                client.close()
        finally:
            redis_server.stop(cfg.redis_dir)
    return report


def _rounds(args, env, sidecar, redis, client, day, files) -> list[dict]:
    from serving.state import ExactState

    lateness = timedelta(seconds=args.lateness)
    runs, previous = [], None
    for events in sorted(args.events):
        duration = args.duration  # long enough for ~5 requests at the projected latency
        if previous and previous["hot"]["one_connection"]["p50_ms"]:
            projected = previous["hot"]["one_connection"]["p50_ms"] * events / previous["events"]
            duration = max(duration, 5 * projected / 1000)
        started = time.perf_counter()
        have = fill_hot(client, day, events, args.seed, lateness)
        filled = round(time.perf_counter() - started, 1)
        keys = ExactState(client, lateness=lateness).keys("merchant", HOT)
        row = {"events": events, "kept_before": have, "fill_seconds": filled}
        parts = {key.rsplit(":", 1)[1]: client.memory_usage(key, samples=0) or 0 for key in keys}
        row["redis_bytes_by_key"] = parts
        row["redis_bytes"] = sum(parts.values())
        print(f"hot merchant: {events:,} events ({have:,} raw), {parts} bytes", flush=True)
        row |= measure(args, env, sidecar.port, sidecar.pgid, redis, files, duration)
        row["duration_s"] = round(duration, 1)
        row["kept_after"] = raw_kept(ExactState(client, lateness=lateness))
        hot, ordinary = row["hot"]["one_connection"], row["ordinary"]["one_connection"]
        done = hot["p99_ms"] is not None and ordinary["p99_ms"]
        row["p99_ratio"] = round(hot["p99_ms"] / ordinary["p99_ms"], 2) if done else None
        runs.append(row)
        previous = row
        print(
            f"  one connection: hot p50 {hot['p50_ms']} / p99 {hot['p99_ms']} ms, ordinary "
            f"p50 {ordinary['p50_ms']} / p99 {ordinary['p99_ms']} ms", flush=True,
        )  # fmt: skip
    return runs


def print_table(report: dict) -> None:
    print("\nexact mode, one hot merchant (one keep-alive connection, closed loop; ms)")
    head = f"{'events':>10} {'Redis KB':>9} {'hot p50':>8} {'hot p99':>8} {'ord p50':>8}"
    head += f" {'ord p99':>8} {'p99 x':>6} {'open hot p99':>13}"
    print(head)
    for row in report["runs"]:
        hot, ordinary = row["hot"]["one_connection"], row["ordinary"]["one_connection"]
        slow = f">{row['duration_s'] * 1000:g}"  # no request completed in the window
        hot = {k: slow if v is None else v for k, v in hot.items()}
        opened = row["hot"].get("open_loop", {})
        open_p99 = opened.get("p99_ms", "skipped" if "skipped" in opened else "")
        print(
            f"{row['events']:>10,} {row['redis_bytes'] / 1024:>9,.0f} {hot['p50_ms']:>8}"
            f" {hot['p99_ms']:>8} {ordinary['p50_ms']:>8} {ordinary['p99_ms']:>8}"
            f" {row['p99_ratio'] or '':>6} {open_p99:>13}"
        )
    largest = max(report["runs"], key=lambda r: r["events"])
    hot = largest["hot"]["one_connection"]
    completed = hot["p99_ms"] is not None
    checks = {
        f"p99 <= {TARGET_P99_MS} ms": completed and hot["p99_ms"] <= TARGET_P99_MS,
        f"p99 <= {TARGET_RATIO}x ordinary": completed and largest["p99_ratio"] <= TARGET_RATIO,
        "Redis <= 1 MB": largest["redis_bytes"] <= TARGET_BYTES,
    }
    for name, ok in checks.items():
        print(f"target at {largest['events']:,} events, {name}: {'pass' if ok else 'MISS'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_entity", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--tx-per-day", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop requests per second")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--workers", type=int, default=2, help="sidecar gunicorn workers")
    parser.add_argument(
        "--lateness", type=float, default=21600.0,
        help="SKEWLESS_EXACT_LATENESS_SECONDS of the sidecar and the hot merchant's state",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report")
    parser.add_argument("--keep", action="store_true", help=f"keep {RUN_DIR} after the run")
    args = parser.parse_args(argv)
    save(run(args), args.out, print_table, None if args.keep else RUN_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
