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
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench import procs, sidecar_report
from bench.features import FOREIGN_ENV, machine
from skewless.tasks import realtime_task

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = PROJECT_ROOT / "var" / "bench" / "sidecar"
DEFAULT_OUT = PROJECT_ROOT / "var" / "bench" / "sidecar.json"
BIN = Path(sys.executable).parent
SCORE_PATH = realtime_task().route
CHAIN = "chain"
STARTED = time.perf_counter()


def bootstrap_exact(cfg, client, day: date, *, first: bool) -> None:
    """Exact mode: the state holds what had arrived before the day (as `skewless replay` does);
    again before every run (cheap), so each run starts from the same state."""
    from serving.state import ExactState
    from skewless.replay import bootstrap_state

    bootstrap_state(ExactState(client), cfg, day)


def reset_stream(cfg, client, day: date, *, first: bool) -> None:
    """Streaming mode: before its first run the consumer restarts from what had arrived before the
    day (as the replay does) and has applied it before the first request. Before every run the
    events that other modes' runs appended while the consumer was paused are trimmed, so it does
    not work through them during the run (they are the same transactions again, dropped late)."""
    from skewless import stream
    from skewless.replay import reset_stream

    client.xtrim(stream.STREAM, maxlen=0)
    if first:
        reset_stream(client, day, wait=120.0)


@dataclass(frozen=True)
class Mode:
    """A sidecar mode to benchmark. ``prepare(cfg, redis_client, day, first=...)`` runs before
    each of its runs; ``consumer``: the skewless subcommand that must run beside the sidecar (started with the
    servers; its CPU is reported beside the sidecar's). A mode that does not answer 200 to a probe
    request (or whose consumer does not exist yet) is skipped, with the reason."""

    name: str
    prepare: Callable | None = None
    consumer: tuple[str, ...] = ()


MODES = (
    Mode("exact", prepare=bootstrap_exact),
    Mode("materialized"),
    Mode("streaming", prepare=reset_stream, consumer=("stream-consumer",)),
)


def server_env(base: dict, cfg, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("SKEWLESS_", "PROMETHEUS_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{base.get('PATH', '')}",  # mlflow execs uvicorn by name
        SKEWLESS_VAR_DIR=str(cfg.var_dir),
        SKEWLESS_REDIS_URL=redis_url,
        OMP_NUM_THREADS="1",
        DO_NOT_TRACK="1",
        FEAST_USAGE="False",
        MLFLOW_TRACKING_URI=cfg.mlflow_tracking_uri,
        MLFLOW_REGISTRY_URI=cfg.mlflow_tracking_uri,
        XDG_CACHE_HOME=str(cfg.var_dir / "cache"),
        MLFLOW_ENV_ROOT=str(cfg.var_dir / "cache" / "mlflow-envs"),
        SKEWLESS_REDIS_CLUSTER=str(cfg.redis_cluster).lower(),
        **extra,
    )
    return env


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


# -- setup ----------------------------------------------------------------------------------------


def _timed(report: dict, step: str, fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    report["setup_seconds"][step] = seconds = round(time.perf_counter() - started, 2)
    print(f"  {step:<20} {seconds:6.1f} s", flush=True)
    return value


def build_warehouse(cfg, args, report: dict) -> date:
    """Simulated transactions imported and built: per-transaction feature rows for every day and
    snapshot rows at the batch cutoff (midnight before the last day). Returns the held-out last
    day: its requests are the load, its per-transaction rows the skew report's offline truth."""
    from skewless import importer, pipeline, simulate

    frame = _timed(
        report,
        "simulate",
        simulate.generate,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        tx_per_day=args.tx_per_day,
        label_delay_days=cfg.label_delay / timedelta(days=1),
    )
    held_out = frame["event_timestamp"].max().date()
    cutoff = datetime.combine(held_out, datetime.min.time())
    report["data"] = {"transactions": len(frame), "held_out_day": held_out.isoformat()}
    report["data"]["held_out_transactions"] = int((frame["event_timestamp"] >= cutoff).sum())
    path = simulate.write(frame, cfg.var_dir / "raw" / "transactions.parquet")
    _timed(report, "import", importer.import_transactions, path)
    _timed(report, "dbt_build", pipeline.dbt, cfg, ["build"], as_of=cutoff)
    return held_out


def train_champion(cfg, day: date, report: dict) -> None:
    """The fraud champion, trained on what was known at the batch cutoff."""
    from models import training

    cutoff = datetime.combine(day, datetime.min.time())
    result = _timed(report, "train_fraud", training.train, "fraud", as_of=cutoff, cfg=cfg)
    report["model"] = {"name": "fraud", "version": result["model_version"]}


def write_bodies(cfg, day: date, path: Path) -> list[dict]:
    """The day's transactions as scoring requests, in arrival order (as `skewless replay` sends)."""
    from skewless.replay import day_frames

    feed, _ = day_frames(cfg, day)
    bodies = [
        {
            "transaction_id": str(row.transaction_id),
            "customer_id": str(row.customer_id),
            "merchant_id": str(row.merchant_id),
            "amount": float(row.amount),
            "event_timestamp": row.event_timestamp.isoformat(),
        }
        for row in feed.itertuples(index=False)
    ]
    path.write_text(json.dumps(bodies))
    return bodies


def chain_spec(feast_port: int, mlflow_port: int, bodies: Path) -> dict:
    from models.datasets import feature_columns
    from skewless.tasks import get_task

    service = get_task("fraud").service
    return {
        "kind": "chain",
        "feast_port": feast_port,
        "mlflow_port": mlflow_port,
        "bodies": str(bodies),
        "feature_service": service.name,
        "join_keys": list(dict.fromkeys(g.entity.join_key for g in service.groups)),
        "columns": feature_columns("fraud"),
    }


# -- servers --------------------------------------------------------------------------------------


def consumer_exists(mode: Mode) -> bool:
    if not mode.consumer:
        return True
    probe = subprocess.run(
        [str(BIN / "skewless"), *mode.consumer, "--help"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def start_feast(servers: procs.Servers, env: dict, cfg, args) -> procs.Server:
    """`feast serve` over the same repo, registry and Redis, tuned as its users would: no worker
    recycling (the default restarts its worker every 1000 requests), no access log."""
    from skewless.pipeline import tool_env

    port = procs.free_port()
    argv = [str(BIN / "feast"), "--chdir", str(cfg.feast_repo), "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--max-requests", "0", "--no-access-log"]
    argv += ["--workers", str(args.feast_workers)]
    feast_env = {**tool_env(cfg, env["SKEWLESS_REDIS_URL"]), **env}
    return servers.start("feast", argv, feast_env, port=port, ready_path=None)


def start_serving(servers: procs.Servers, env: dict, cfg, modes: list[Mode], args) -> dict:
    """The sidecar, the modes' stream consumers and `mlflow models serve`, started side by side."""
    started = {}
    port = procs.free_port()
    argv = [str(BIN / "skewless"), "serve", "--port", str(port)]
    argv += ["--workers", str(args.workers), "--threads", str(args.threads)]
    sidecar_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(cfg.var_dir / "prometheus")}
    started["sidecar"] = servers.start("sidecar", argv, sidecar_env, port=port, ready_path=None)
    for mode in modes:
        if mode.consumer:
            name = f"consumer-{mode.name}"
            argv = [str(BIN / "skewless"), *mode.consumer]
            started[name] = servers.start(name, argv, env, port=0, ready_path=None)
    port = procs.free_port()
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/fraud@champion"]
    argv += ["--workers", str(args.mlflow_workers), "--env-manager", "local"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    started["mlflow"] = servers.start("mlflow", argv, env, port=port, ready_path=None)
    return started


# -- runs -----------------------------------------------------------------------------------------


def loadgen(spec: dict, name: str, env: dict) -> dict:
    directory = RUN_DIR / "loadgen"
    directory.mkdir(parents=True, exist_ok=True)
    spec_path, out = directory / f"{name}.spec.json", directory / f"{name}.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    out.unlink(missing_ok=True)
    run = spec["run"]
    budget = 120 + run.get("duration", 0) * 2 + len(run.get("levels", [])) * 30
    subprocess.run(
        [sys.executable, "-m", "bench.loadgen", str(spec_path), str(out)],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        timeout=budget,
    )
    return json.loads(out.read_text())


def probe_modes(cfg, redis_url, day, port: int, bodies: list[dict], modes: list[Mode]) -> dict:
    """Why each mode cannot serve (None: after its ``prepare`` it answers 200)."""
    from bench.loadgen import Connection, post

    conn, out = Connection(port), {}
    try:
        for mode in modes:
            try:
                if mode.prepare:
                    client = redis_client(redis_url)
                    try:
                        mode.prepare(cfg, client, day, first=True)
                    finally:
                        client.close()
            except Exception as exc:  # e.g. the stream consumer never applied the reset
                out[mode.name] = f"prepare failed: {type(exc).__name__}: {exc}"
                continue
            body = json.dumps({**bodies[0], "mode": mode.name}).encode()
            status, text = conn.request(post(port, SCORE_PATH, body))
            out[mode.name] = None if status == 200 else f"HTTP {status}: {text[:200].decode()}"
    finally:
        conn.close()
    return out


def check_chain(port: int, chain: dict, bodies: list[dict], count: int) -> dict:
    """The chain's score equals the sidecar's (materialized mode) on the first ``count`` bodies."""
    from bench.loadgen import ChainTarget, Connection, post

    target = ChainTarget(chain, bodies[:count])
    conns, sidecar = target.open(), Connection(port)
    diffs = []
    try:
        for i, body in enumerate(bodies[:count]):
            _, chained = target.score(conns, i)
            status, text = sidecar.request(
                post(port, SCORE_PATH, json.dumps({**body, "mode": "materialized"}).encode())
            )
            if status != 200 or chained is None:
                raise RuntimeError(f"scoring check failed on {body}: {status} {text[:300]!r}")
            diffs.append(abs(json.loads(text)["fraud_probability"] - chained))
    finally:
        for conn in (*conns, sidecar):
            conn.close()
    return {"requests": count, "max_abs_diff": max(diffs)}


class Realtime:
    """The load runs. Every phase runs all targets one after the other (sidecar modes, then the
    chain), so background load of the machine hits them alike. A mode's stream consumer is paused
    (SIGSTOP to its group) outside that mode's runs: the other modes are measured as a deployment
    without it would run them."""

    def __init__(self, args, cfg, env: dict, redis, started: dict, modes: list[Mode], day: date):
        self.args, self.cfg, self.env, self.redis, self.day = args, cfg, env, redis, day
        self.started = started
        bodies = str(RUN_DIR / "bodies.json")
        sidecar, feast, mlflow = started["sidecar"], started["feast"], started["mlflow"]
        self.chain = chain_spec(feast.port, mlflow.port, bodies)
        self.modes = {mode.name: mode for mode in modes}
        self.targets = {}
        for mode in modes:
            target = {"kind": "sidecar", "port": sidecar.port, "path": SCORE_PATH}
            pgids = {"server": sidecar.pgid, "redis": redis.pid}
            if mode.consumer:
                pgids["consumer"] = started[f"consumer-{mode.name}"].pgid
            self.targets[mode.name] = {
                "target": target | {"bodies": bodies, "mode": mode.name},
                "cpu_pgids": pgids,
            }
        self.targets[CHAIN] = {
            "target": self.chain,
            "cpu_pgids": {"feast": feast.pgid, "mlflow": mlflow.pgid, "redis": redis.pid},
        }
        for mode in modes:
            if mode.consumer:
                procs.pause(started[f"consumer-{mode.name}"])

    @contextlib.contextmanager
    def active(self, name: str):
        """The target's consumer running and its mode prepared, for one run."""
        mode = self.modes.get(name)
        consumer = self.started.get(f"consumer-{name}")
        if consumer:
            procs.resume(consumer)
        try:
            if mode and mode.prepare:
                client = redis_client(self.redis.url)
                try:
                    mode.prepare(self.cfg, client, self.day, first=False)
                finally:
                    client.close()
            yield
        finally:
            if consumer:
                procs.pause(consumer)

    def open_run(self, name: str, rate: float, duration: float, label: str, warmup: float) -> dict:
        a = self.args
        run = {"kind": "open", "rate": rate, "duration": duration, "warmup": warmup}
        run["connections"] = a.connections
        with self.active(name):
            result = loadgen(self.targets[name] | {"run": run}, f"{label}-{name}", self.env)
        print(
            f"  {label:<6} {name:<12} {rate:5g}/s: p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, {result['achieved_rate']}/s, errors {result['errors']}",
            flush=True,
        )
        return result

    def max_run(self, name: str) -> dict:
        a = self.args
        run = {"kind": "max_throughput", "levels": a.levels, "duration": a.max_seconds}
        run |= {"warmup": 1.0, "sane_p99_ms": a.sane_p99_ms}
        with self.active(name):
            result = loadgen(self.targets[name] | {"run": run}, f"max-{name}", self.env)
        levels = ", ".join(f"c{r['concurrency']} {r['throughput']}/s" for r in result["levels"])
        print(f"  max    {name:<12} {result['throughput']}/s ({levels})", flush=True)
        return result

    def calibrate(self) -> dict:
        """Floors, at the same rate and connections: the client's (a null server) and the HTTP
        stack's (a bare Flask endpoint under gunicorn with the sidecar's settings)."""
        a, out = self.args, {}
        run = {"kind": "open", "rate": a.rate, "duration": a.calibration_seconds, "warmup": 1.0}
        run["connections"] = a.connections
        null_port, floor_port = procs.free_port(), procs.free_port()
        conf = str(PROJECT_ROOT / "serving" / "gunicorn_conf.py")
        gunicorn = [str(BIN / "gunicorn"), "--config", conf, "--pythonpath", str(PROJECT_ROOT)]
        gunicorn += ["--bind", f"127.0.0.1:{floor_port}", "--workers", str(a.workers)]
        gunicorn += ["--threads", str(a.threads), "bench.floor_app:app"]
        floor_env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(RUN_DIR / "prometheus-floor")}
        with procs.Servers(RUN_DIR / "logs") as servers:
            argv = [sys.executable, "-m", "bench.loadgen", "--null-server", str(null_port)]
            null = servers.start("null", argv, self.env, port=null_port, ready_path="/", timeout=60)
            floor = servers.start(
                "http-floor",
                gunicorn,
                floor_env,
                port=floor_port,
                ready_path="/healthz",
                timeout=60,
            )
            spec = {
                "target": {"kind": "null", "port": null_port},
                "cpu_pgids": {"server": null.pgid},
            }
            out["client"] = loadgen(spec | {"run": run}, "floor-client", self.env)
            target = {"kind": "sidecar", "port": floor_port, "path": SCORE_PATH}
            target["bodies"] = str(RUN_DIR / "bodies.json")
            spec = {"target": target, "cpu_pgids": {"server": floor.pgid}}
            out["http"] = loadgen(spec | {"run": run}, "floor-http", self.env)
        for name, result in out.items():
            print(
                f"  floor  {name:<12} {a.rate:5g}/s: p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms, server {result['server_cpu_us']} us CPU/req",
                flush=True,
            )
        return out

    def run(self, bodies: list[dict]) -> dict:
        a, names = self.args, list(self.targets)
        port = self.started["sidecar"].port
        out = {"check_chain": check_chain(port, self.chain, bodies, a.check_requests)}
        out["floors"] = self.calibrate()
        out["at_rate"] = {
            name: self.open_run(name, a.rate, a.duration, "rate", a.warmup) for name in names
        }
        out["max_throughput"] = {name: self.max_run(name) for name in names}
        chain = out["at_rate"][CHAIN]
        out["chain_kept_rate"] = not chain["errors"] and chain["achieved_rate"] >= 0.97 * a.rate
        best = out["max_throughput"][CHAIN]["throughput"] or chain["achieved_rate"]
        if not out["chain_kept_rate"] and a.common_rate:
            # a rate the chain sustains: at most --common-rate, at most 80% of its maximum
            rate = max(1.0, min(a.common_rate, round(0.8 * best, -1) or 0.8 * best))
            out["common_rate"] = rate
            out["at_common_rate"] = {
                name: self.open_run(name, rate, a.common_duration, "common", min(a.warmup, 2.0))
                for name in names
            }
        return out


def redis_client(url: str):
    from skewless import redis_server

    return redis_server.connect(url)  # a RedisCluster with --redis-cluster


# -- the whole run --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    for name in [*FOREIGN_ENV, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"]:
        os.environ.pop(name, None)
    for name in [k for k in os.environ if k.startswith("SKEWLESS_")]:
        os.environ.pop(name)
    os.environ.update(SKEWLESS_VAR_DIR=str(RUN_DIR), DO_NOT_TRACK="1", FEAST_USAGE="False")
    os.environ["SKEWLESS_REDIS_CLUSTER"] = str(args.redis_cluster).lower()
    base_env = dict(os.environ)  # before feast's import adds its PROMETHEUS_* variables
    from bench import offline
    from skewless import pipeline, redis_server, settings

    cfg = settings.load()
    if redis_server.status(cfg.redis_dir):  # left running by an interrupted run
        redis_server.stop(cfg.redis_dir)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    report = {
        "benchmark": "sidecar",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("out", "keep")},
        "setup_seconds": {},
    }
    started_at = time.perf_counter()
    report["conditions"] = [conditions("start")]

    def snapshot(phase: str) -> None:
        report["conditions"].append(conditions(phase, report["conditions"][-1]))

    skipped: dict[str, str] = {}
    modes = [m for m in MODES if m.name in args.modes]
    with procs.sigterm_as_interrupt():
        redis = redis_server.start(cfg.redis_dir, cluster=cfg.redis_cluster)
        try:
            env = server_env(base_env, cfg, redis.url)
            with procs.Servers(RUN_DIR / "logs") as servers:
                print("setup: simulate, import, dbt build, feast apply + train", flush=True)
                day = build_warehouse(cfg, args, report)
                cutoff = datetime.combine(day, datetime.min.time())
                with ThreadPoolExecutor(1) as pool:  # `feast apply` runs as a subprocess
                    apply = pool.submit(
                        _timed, report, "feast_apply", pipeline.feast_apply, cfg, redis.url
                    )
                    train_champion(cfg, day, report)
                    apply.result()
                bodies = write_bodies(cfg, day, RUN_DIR / "bodies.json")
                for mode in modes:
                    if not consumer_exists(mode):
                        skipped[mode.name] = (
                            f"`skewless {' '.join(mode.consumer)}` does not exist yet"
                        )
                modes = [m for m in modes if m.name not in skipped]
                print("servers: sidecar, feast serve, mlflow models serve; materialize", flush=True)
                started = start_serving(servers, env, cfg, modes, args)
                started["feast"] = start_feast(servers, env, cfg, args)
                _timed(
                    report,
                    "materialize",
                    pipeline.materialize,
                    cfg,
                    end=cutoff,
                    redis_url=redis.url,
                )
                for name, path in (
                    ("sidecar", "/readyz"),
                    ("feast", "/health"),
                    ("mlflow", "/ping"),
                ):
                    servers.wait_ready(started[name], path, timeout=240)
                snapshot("setup")
                reasons = probe_modes(cfg, redis.url, day, started["sidecar"].port, bodies, modes)
                skipped.update({name: why for name, why in reasons.items() if why})
                modes = [m for m in modes if not reasons[m.name]]
                runs = Realtime(args, cfg, env, redis, started, modes, day)
                report["realtime"] = runs.run(bodies)
            snapshot("realtime")
            names = report["modes"] = [m.name for m in modes]
            # The offline phases use serving/ and models/ as they are now; one that fails is
            # reported (report["errors"]) and the others still run.
            phases = [
                ("profile", f"profile: {args.profile} requests per mode in-process",
                 lambda: offline.profile(cfg, redis.url, bodies, names, requests=args.profile)),
                ("skew", f"skew report over {args.skew_requests:,} logged requests per mode",
                 lambda: offline.skew(cfg, redis.url, day, requests=args.skew_requests)),
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
                snapshot(phase)
        finally:
            redis_server.stop(cfg.redis_dir)
    report["skipped_modes"] = skipped
    report["modes"] = [m.name for m in modes]
    report["seconds"] = round(time.perf_counter() - started_at, 1)
    report["loadavg_at_end"] = os.getloadavg()
    report["targets"] = sidecar_report.targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
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
