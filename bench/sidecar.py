"""Benchmark of the realtime sidecar against its latency and throughput targets, beside the usual alternative chain.

1. Setup in its own var dir (var/bench/sidecar, wiped at start) with a private Redis: simulate a
   small warehouse, import all days but the last, dbt build, feast apply, materialize at the
   batch cutoff, train the fraud champion; then import the held-out last day and rebuild the
   offline truth (the skew report needs it). The day's transactions, in arrival order, are the
   request bodies.
2. Servers, each in its own process group (stopped by the group, also on errors and Ctrl-C):
   `skewless serve` (gunicorn, 2 gthread workers), and the chain tuned as its users would -
   `feast serve --max-requests 0` over the same repo and Redis, `mlflow models serve -m
   models:/fraud@champion --workers 2 --env-manager local`, OMP_NUM_THREADS=1. Before timing,
   the chain's scores are checked equal to the sidecar's (materialized mode) on sample requests.
3. Latency: open loop at 300 req/s (bench/loadgen.py, a separate process) per sidecar mode and for
   the chain, latency from each request's scheduled time; the runs of all targets interleave in
   time so background load hits them alike. If the chain cannot keep 300 req/s, every target is
   run again at a rate the chain sustains. Then maximum throughput: closed loop at 1, 2, 4, 8
   connections. A null server calibrates the client's own floor.
4. Skew report: 100K serving-log entries per mode (the entries the sidecar logged during the runs,
   copied with fresh request ids), timed `flush_log` + `skew_report`.
5. CPU per prediction: realtime = CPU of the gunicorn process group (/proc) during the 300 req/s
   window / requests; batch = process CPU of `models.batch_score.score("fraud", day)` / rows.

Writes var/bench/sidecar.json and prints a table: `python -m bench.sidecar` (--help for sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from bench import procs, sidecar_report, sidecar_setup
from bench.features import machine
from bench.sidecar_load import MODES, Mode, Realtime, missing_consumers, probe_modes
from bench.sidecar_setup import PROJECT_ROOT, RUN_DIR

DEFAULT_OUT = PROJECT_ROOT / "var" / "bench" / "sidecar.json"
STARTED = time.perf_counter()


def _cpu_ticks() -> tuple[int, int, int]:
    """(total, idle + iowait, steal) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4], fields[7]


def conditions(phase: str, previous: dict | None = None) -> dict:
    """How busy the machine was: the load average, the share of CPU time busy (anyone's, ours
    included) and stolen by the hypervisor since the previous snapshot, and a speed index - the
    milliseconds of a fixed pure-Python loop now (higher = a slower, busier machine)."""
    started = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i
    loop_ms = (time.perf_counter() - started) * 1000
    ticks = _cpu_ticks()
    out = {"phase": phase, "at_seconds": round(time.perf_counter() - STARTED, 1)}
    out |= {"loadavg": os.getloadavg(), "python_loop_ms": round(loop_ms, 1)}
    out["ticks"] = ticks
    if previous:
        spent = max(ticks[0] - previous["ticks"][0], 1)
        out["busy_pct"] = round(100 * (spent - (ticks[1] - previous["ticks"][1])) / spent, 1)
        out["steal_pct"] = round(100 * (ticks[2] - previous["ticks"][2]) / spent, 1)
    return out


def snapshot(report: dict, phase: str) -> None:
    """The machine's conditions after ``phase``, against those after the phase before."""
    report["conditions"].append(conditions(phase, report["conditions"][-1]))


# -- the whole run --------------------------------------------------------------------------------


def new_report(args: argparse.Namespace) -> dict:
    return {
        "benchmark": "sidecar",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("out", "keep")},
        "setup_seconds": {},
    }


def measure_realtime(
    args, cfg, env: dict, redis, report: dict, skipped: dict[str, str]
) -> tuple[list[Mode], list[dict], date]:
    """Setup, servers and the load runs; every server is stopped on the way out. Modes that
    cannot run go to ``skipped``. Returns the modes measured, the request bodies and the day."""
    modes = [m for m in MODES if m.name in args.modes]
    with procs.Servers(RUN_DIR / "logs") as servers:
        day, bodies = sidecar_setup.prepare_data(cfg, args, report, redis.url)
        skipped.update(missing_consumers(modes))
        modes = [m for m in modes if m.name not in skipped]
        started = sidecar_setup.start_servers(servers, env, cfg, modes, args, report, day)
        snapshot(report, "setup")
        reasons = probe_modes(cfg, redis.url, day, started["sidecar"].port, bodies, modes)
        skipped.update({name: why for name, why in reasons.items() if why})
        modes = [m for m in modes if not reasons[m.name]]
        runs = Realtime(args, cfg, env, redis, started, modes, day)
        report["realtime"] = runs.run(bodies)
    return modes, bodies, day


def measure_offline(args, cfg, redis_url: str, report: dict, bodies: list[dict], day: date) -> None:
    """The phases without load, after the servers are stopped. They use serving/ and models/ as
    they are now; one that fails is reported (report["errors"]) and the others still run."""
    from bench import offline

    names = report["modes"]
    phases = [
        ("profile", f"profile: {args.profile} requests per mode in-process",
         lambda: offline.profile(cfg, redis_url, bodies, names, requests=args.profile)),
        ("skew", f"skew report over {args.skew_requests:,} logged requests per mode",
         lambda: offline.skew(cfg, redis_url, day, requests=args.skew_requests)),
        ("batch", "batch scoring CPU",
         lambda: offline.batch_cpu(cfg, day, days=args.batch_days)),
    ]  # fmt: skip
    for phase, message, measure in phases:
        if phase == "profile" and not args.profile:
            continue
        print(message, flush=True)
        try:
            report[phase] = measure()
        except Exception as exc:
            report.setdefault("errors", {})[phase] = f"{type(exc).__name__}: {exc}"
            print(f"error: {phase} failed: {exc!r}", file=sys.stderr, flush=True)
        snapshot(report, phase)


def finish(report: dict, skipped: dict[str, str], modes: list[Mode], started_at: float) -> dict:
    report["skipped_modes"] = skipped
    report["modes"] = [m.name for m in modes]
    report["seconds"] = round(time.perf_counter() - started_at, 1)
    report["loadavg_at_end"] = os.getloadavg()
    report["targets"] = sidecar_report.targets(report)
    return report


def run(args: argparse.Namespace) -> dict:
    base_env = sidecar_setup.isolate_env(args.redis_cluster)
    from skewless import redis_server, settings

    cfg = settings.load()
    sidecar_setup.fresh_run_dir(cfg)
    report = new_report(args)
    started_at = time.perf_counter()
    report["conditions"] = [conditions("start")]
    skipped: dict[str, str] = {}
    with procs.sigterm_as_interrupt():
        redis = redis_server.start(cfg.redis_dir, cluster=cfg.redis_cluster)
        try:
            env = sidecar_setup.server_env(base_env, cfg, redis.url)
            modes, bodies, day = measure_realtime(args, cfg, env, redis, report, skipped)
            snapshot(report, "realtime")
            report["modes"] = [m.name for m in modes]
            measure_offline(args, cfg, redis.url, report, bodies, day)
        finally:
            redis_server.stop(cfg.redis_dir)
    return finish(report, skipped, modes, started_at)


def build_parser() -> argparse.ArgumentParser:
    from skewless import settings

    parser = argparse.ArgumentParser(prog="python -m bench.sidecar", description=__doc__)
    size = parser.add_argument_group("data")
    size.add_argument("--customers", type=int, default=5000)
    size.add_argument("--days", type=int, default=35)
    size.add_argument("--tx-per-day", type=float, default=0.5)
    size.add_argument("--seed", type=int, default=42)
    load = parser.add_argument_group("load")
    load.add_argument("--modes", nargs="+", default=[m.name for m in MODES])
    load.add_argument("--rate", type=float, default=300.0, help="open-loop requests per second")
    load.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    load.add_argument("--warmup", type=float, default=3.0, help="seconds sent before measuring")
    load.add_argument("--connections", type=int, default=8, help="open-loop connections")
    load.add_argument(
        "--common-rate", type=float, default=100.0, help="if the chain cannot keep --rate"
    )
    load.add_argument("--common-duration", type=float, default=8.0)
    load.add_argument(
        "--levels", type=int, nargs="+", default=[1, 4], help="closed-loop connections"
    )
    load.add_argument("--max-seconds", type=float, default=3.0, help="measured seconds per level")
    load.add_argument("--sane-p99-ms", type=float, default=50.0, help="p99 bound of max throughput")
    load.add_argument("--calibration-seconds", type=float, default=6.0)
    load.add_argument("--wrk-seconds", type=float, default=5.0, help="per wrk run (outside client)")
    load.add_argument("--wrk-bodies", type=int, default=2000, help="bodies cycled by wrk")
    load.add_argument("--check-requests", type=int, default=100, help="chain vs sidecar scores")
    load.add_argument("--workers", type=int, default=2, help="sidecar gunicorn workers")
    load.add_argument(
        "--threads",
        type=int,
        default=settings.get("SKEWLESS_THREADS"),
        help="threads per sidecar worker (default: SKEWLESS_THREADS, as `skewless serve`)",
    )
    load.add_argument("--feast-workers", type=int, default=2)
    load.add_argument("--mlflow-workers", type=int, default=2)
    parser.add_argument("--skew-requests", type=int, default=100_000)
    parser.add_argument("--batch-days", type=int, default=7)
    parser.add_argument(
        "--profile", type=int, default=0, help="in-process profiled requests per mode, e.g. 500"
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="run on a private three-primary Redis Cluster instead of one server",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report")
    parser.add_argument("--keep", action="store_true", help=f"keep {RUN_DIR} after the run")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = set(args.modes) - {m.name for m in MODES}
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    sidecar_report.print_table(report)
    print(f"report: {args.out}")
    if not args.keep:
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    for phase, error in report.get("errors", {}).items():
        print(f"error: {phase} failed: {error}", file=sys.stderr)
    return 1 if report.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
