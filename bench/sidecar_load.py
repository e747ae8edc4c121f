"""The sidecar benchmark's load: the sidecar modes, one load generator process per run, the probes
and the chain's score check, and the runs of every target one after the other."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bench import procs, wrk
from bench.sidecar_setup import BIN, PROJECT_ROOT, RUN_DIR
from skewless.tasks import realtime_task

SCORE_PATH = realtime_task().route
CHAIN = "chain"


# -- modes ----------------------------------------------------------------------------------------


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


def consumer_exists(mode: Mode) -> bool:
    if not mode.consumer:
        return True
    probe = subprocess.run(
        [str(BIN / "skewless"), *mode.consumer, "--help"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def missing_consumers(modes: list[Mode]) -> dict[str, str]:
    """The modes whose consumer subcommand does not exist yet, with the reason."""
    return {
        mode.name: f"`skewless {' '.join(mode.consumer)}` does not exist yet"
        for mode in modes
        if not consumer_exists(mode)
    }


def redis_client(url: str):
    from skewless import redis_server

    return redis_server.connect(url)  # a RedisCluster with --redis-cluster


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
            if wrk.available():
                self.wrk_results["floor"] = self.wrk_run("floor", floor_port, None)
        for name, result in out.items():
            print(
                f"  floor  {name:<12} {a.rate:5g}/s: p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms, server {result['server_cpu_us']} us CPU/req",
                flush=True,
            )
        return out

    def wrk_run(self, name: str, port: int, mode: str | None) -> dict:
        """wrk over one connection (latency) and four (throughput), the bodies cycled."""
        bodies = json.loads((RUN_DIR / "bodies.json").read_text())[: self.args.wrk_bodies]
        lua = wrk.script(bodies, SCORE_PATH, RUN_DIR / f"wrk-{name}.lua", mode)
        url, seconds = f"http://127.0.0.1:{port}{SCORE_PATH}", self.args.wrk_seconds
        runs = {f"c{c}": wrk.run(url, lua, connections=c, seconds=seconds) for c in (1, 4)}
        one, four = runs["c1"], runs["c4"]
        print(
            f"  wrk    {name:<12} c1: p50 {one.get('p50_ms')} ms, p99 {one.get('p99_ms')} ms; "
            f"c4: {four['requests_per_second']}/s (non-2xx {one['non_2xx'] + four['non_2xx']})",
            flush=True,
        )
        return runs

    def run(self, bodies: list[dict]) -> dict:
        a, names = self.args, list(self.targets)
        port = self.started["sidecar"].port
        out = {"check_chain": check_chain(port, self.chain, bodies, a.check_requests)}
        self.wrk_results: dict = {}
        out["floors"] = self.calibrate()
        if wrk.available():
            for name in self.modes:
                with self.active(name):
                    self.wrk_results[name] = self.wrk_run(name, port, name)
        else:
            self.wrk_results["skipped"] = (
                "wrk not found (make bench installs it: apt-get install wrk)"
            )
        out["wrk"] = self.wrk_results
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
