"""The load generator's drivers and their statistics: open loop at a constant rate (latency from
each request's scheduled time), closed loop with a few connections, the maximum throughput over
closed-loop levels, and the CPU of the servers' process groups and of the client per request.

A target is anything with ``open()`` (its connections) and ``call(conns, i)`` (the status of
request ``i``), as in bench/loadgen.py.
"""

from __future__ import annotations

import gc
import itertools
import math
import threading
import time

from bench.procs import group_cpu

# -- statistics -----------------------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest rank."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    return {
        "count": len(ordered),
        "p50_ms": ms(percentile(ordered, 0.50)),
        "p95_ms": ms(percentile(ordered, 0.95)),
        "p99_ms": ms(percentile(ordered, 0.99)),
        "p999_ms": ms(percentile(ordered, 0.999)),
        "max_ms": ms(ordered[-1] if ordered else None),
        "mean_ms": ms(sum(ordered) / len(ordered) if ordered else None),
    }


def _errors(codes) -> dict:
    out: dict[str, int] = {}
    for code in codes:
        if code != 200:
            key = "not_sent" if code == 0 else ("exception" if code < 0 else str(code))
            out[key] = out.get(key, 0) + 1
    return out


class CpuMeter:
    """CPU seconds of the servers' process groups and of this client between two marks."""

    def __init__(self, pgids: dict[str, int]):
        self.pgids = pgids

    def mark(self) -> dict:
        cpu = group_cpu(self.pgids.values()) if self.pgids else {}
        out = {name: cpu[pgid][0] for name, pgid in self.pgids.items()}
        out["client"] = time.process_time()
        return out

    @staticmethod
    def per_request(before: dict, after: dict, requests: int) -> dict:
        return {
            f"{name}_cpu_us": round((after[name] - before[name]) / max(requests, 1) * 1e6, 1)
            for name in before
        }


# -- runs -----------------------------------------------------------------------------------------


def _call(target, conns, i: int) -> int:
    """One request: its status, or -1 when it failed (the connections are then closed, to be
    reopened by the next call)."""
    try:
        return target.call(conns, i)
    except (OSError, ValueError, KeyError):
        for conn in conns:
            conn.close()
        return -1


def open_loop(
    target, meter: CpuMeter, *, rate: float, duration: float, warmup: float, **kw
) -> dict:
    """Requests scheduled every 1/rate s on ``connections`` keep-alive connections; each latency
    runs from the request's scheduled time to its response. A request still unsent ``grace`` s
    after the last scheduled time is counted as not sent (the target fell behind)."""
    connections, segments, grace = (
        kw.get("connections", 8),
        kw.get("segments", 4),
        kw.get("grace", 5.0),
    )
    total = int(round(rate * (warmup + duration)))
    first = int(round(rate * warmup))
    latency = [math.nan] * total
    done = [math.nan] * total
    codes = [0] * total
    counter = itertools.count()
    ready = threading.Barrier(connections + 1)
    clock = {}

    def worker():
        conns = target.open()
        ready.wait()
        start, deadline = clock["start"], clock["start"] + warmup + duration + grace
        try:
            while (i := next(counter)) < total:
                due = start + i / rate
                now = time.perf_counter()
                if now > deadline:
                    return
                if due > now:
                    time.sleep(due - now)
                code = _call(target, conns, i)
                finished = time.perf_counter()
                latency[i], done[i], codes[i] = finished - due, finished, code
        finally:
            for conn in conns:
                conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    clock["start"] = time.perf_counter() + 0.1
    ready.wait()
    start = clock["start"]
    before, after = _measured_window(meter, threads, start + warmup, duration)

    measured = range(first, total)
    ok = [latency[i] for i in measured if codes[i] == 200]
    finished = [done[i] for i in measured if codes[i] == 200]
    span = (max(finished) - (start + warmup)) if finished else math.nan
    size = max(1, len(measured) // segments)
    parts = [range(s, min(s + size, total)) for s in range(first, total, size)][:segments]
    return {
        "kind": "open",
        "rate": rate,
        "duration_s": duration,
        "warmup_s": warmup,
        "connections": connections,
        "scheduled": len(measured),
        "ok": len(ok),
        "errors": _errors(codes[i] for i in measured),
        "achieved_rate": round(len(ok) / span, 1) if finished else 0.0,
        **summarize(ok),
        "segments": [
            summarize([latency[i] for i in part if codes[i] == 200]) for part in parts if part
        ],
        **CpuMeter.per_request(before, after, len(ok)),
        "cpu_requests": len(ok),
    }


def closed_loop(
    target, meter: CpuMeter, *, concurrency: int, duration: float, warmup: float
) -> dict:
    """``concurrency`` connections, each sending its next request as soon as the last returns."""
    ready = threading.Barrier(concurrency + 1)
    clock = {}
    results: list[list[tuple[float, float, int]]] = [[] for _ in range(concurrency)]

    def worker(slot: int):
        conns = target.open()
        out = results[slot]
        ready.wait()
        end, i = clock["end"], slot
        try:
            while (sent := time.perf_counter()) < end:
                code = _call(target, conns, i)
                out.append((sent, time.perf_counter(), code))
                i += concurrency
        finally:
            for conn in conns:
                conn.close()

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(concurrency)]
    for thread in threads:
        thread.start()
    start = time.perf_counter() + 0.1
    clock["end"] = start + warmup + duration
    ready.wait()
    before, after = _measured_window(meter, threads, start + warmup, duration)
    window = [r for rs in results for r in rs if start + warmup <= r[0] and r[1] <= clock["end"]]
    ok = [d - s for s, d, c in window if c == 200]
    return {
        "kind": "closed",
        "concurrency": concurrency,
        "duration_s": duration,
        "requests": len(window),
        "errors": _errors(c for _, _, c in window),
        "throughput": round(len(ok) / duration, 1),
        **summarize(ok),
        **CpuMeter.per_request(before, after, len(ok)),
    }


def max_throughput(target, meter: CpuMeter, *, levels, duration, warmup, sane_p99_ms) -> dict:
    """Closed loop at each concurrency level; the maximum is the highest throughput of a level
    without errors whose p99 stays at or under ``sane_p99_ms``."""
    runs = []
    for concurrency in levels:
        gc.collect()
        runs.append(
            closed_loop(target, meter, concurrency=concurrency, duration=duration, warmup=warmup)
        )
    sane = [
        r
        for r in runs
        if not r["errors"] and r["p99_ms"] is not None and r["p99_ms"] <= sane_p99_ms
    ]
    best = max(sane, key=lambda r: r["throughput"], default=None)
    fastest = max(runs, key=lambda r: r["throughput"])
    return {
        "kind": "max_throughput",
        "sane_p99_ms": sane_p99_ms,
        "throughput": best["throughput"] if best else None,
        "at_concurrency": best["concurrency"] if best else None,
        "p99_ms": best["p99_ms"] if best else None,
        # when no level keeps p99 sane: the most any level did, whatever its p99
        "best_throughput": fastest["throughput"],
        "best_at_concurrency": fastest["concurrency"],
        "best_p99_ms": fastest["p99_ms"],
        "levels": runs,
    }


def _measured_window(meter: CpuMeter, threads, begin: float, duration: float):
    """CPU marks at ``begin`` and ``begin + duration`` (the measured window), then the load
    threads joined. Returns (before, after)."""
    _sleep_until(begin)
    before = meter.mark()
    _sleep_until(begin + duration)
    after = meter.mark()
    for thread in threads:
        thread.join()
    return before, after


def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
