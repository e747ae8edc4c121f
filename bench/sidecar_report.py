"""The sidecar benchmark's targets and its printed table."""

from __future__ import annotations

P50_MS, P99_MS, SPEEDUP, SKEW_SECONDS = 1.5, 5.0, 5.0, 10.0
USUAL_RATIO = "usual claim 25-50x"
CHAIN = "chain"


def realtime_cpu_us(run: dict) -> float:
    """CPU per request of the processes that serve it: the sidecar (gunicorn group) and, in
    streaming mode, the stream consumer. Redis is reported beside it, not in it."""
    return round(run["server_cpu_us"] + run.get("consumer_cpu_us", 0.0), 1)


def _kept(run: dict) -> bool:
    return not run["errors"] and run["achieved_rate"] >= 0.97 * run["rate"]


def _check(value, limit, *, at_least: bool = False) -> bool | None:
    if value is None:
        return None
    return value >= limit if at_least else value <= limit


def _ratio(a, b) -> float | None:
    return round(a / b, 1) if a and b else None


def targets(report: dict) -> dict:
    """name -> {target, value, ok}: latency, rate kept and speed-up per mode, skew report seconds,
    and the CPU ratio (no target, the usual claim beside it)."""
    realtime, out = report.get("realtime", {}), {}
    at_rate = realtime.get("at_rate", {})
    chain = at_rate.get(CHAIN)
    common = realtime.get("at_common_rate", {})
    chain_common = common.get(CHAIN)
    batch = report.get("batch", {}).get("cpu_us_per_row_excl_load")
    for mode in report.get("modes", []):
        run = at_rate[mode]
        rate = f"{run['rate']:g} req/s"
        out[f"{mode}.p50"] = {"target": f"<= {P50_MS} ms at {rate}", "value": run["p50_ms"]}
        out[f"{mode}.p50"]["ok"] = _check(run["p50_ms"], P50_MS)
        out[f"{mode}.p99"] = {"target": f"<= {P99_MS} ms at {rate}", "value": run["p99_ms"]}
        out[f"{mode}.p99"]["ok"] = _check(run["p99_ms"], P99_MS)
        out[f"{mode}.rate"] = {"target": f"keeps {rate}", "value": run["achieved_rate"]}
        out[f"{mode}.rate"]["ok"] = _kept(run)
        # Speed-up: at the common rate when the chain could not keep the full rate (a queue is
        # no latency comparison), else at the full rate.
        base, versus = (common.get(mode), chain_common) if chain_common else (run, chain)
        if base and versus:
            where = f"{versus['rate']:g} req/s"
            for q in ("p50", "p99"):
                value = _ratio(versus[f"{q}_ms"], base[f"{q}_ms"])
                out[f"{mode}.speedup_{q}"] = {
                    "target": f">= {SPEEDUP:g}x lower {q} than the chain at {where}",
                    "value": value,
                    "ok": _check(value, SPEEDUP, at_least=True) if _kept(versus) else None,
                }
        if batch:
            value = _ratio(realtime_cpu_us(run), batch)
            out[f"{mode}.cpu_ratio"] = {"target": USUAL_RATIO, "value": value, "ok": None}
    for mode, skew in report.get("skew", {}).items():
        out[f"skew.{mode}"] = {
            "target": f"<= {SKEW_SECONDS:g} s over {skew['requests']:,} requests",
            "value": skew["seconds"],
            "ok": _check(skew["seconds"], SKEW_SECONDS),
        }
    return out


def _ms(run: dict) -> str:
    return f"p50 {run['p50_ms']} / p95 {run['p95_ms']} / p99 {run['p99_ms']} ms"


def _spread(run: dict) -> str:
    parts = [s["p99_ms"] for s in run.get("segments", []) if s["p99_ms"] is not None]
    return f"p99 {min(parts)}..{max(parts)} ms over {len(parts)} segments" if parts else ""


def _ok(goal: dict | None) -> str:
    return {True: "yes", False: "NO"}.get((goal or {}).get("ok"), "")


def _floor_rows(realtime: dict) -> list[tuple[str, str, str, str]]:
    out = []
    floors = realtime.get("floors", {})
    for name, label in (("client", "null server"), ("http", "bare Flask, gunicorn")):
        if name in floors:
            run = floors[name]
            value = f"{_ms(run)}; server {run['server_cpu_us']}, client {run['client_cpu_us']} us CPU/req"
            out.append((f"{name} floor ({label}) @{run['rate']:g}/s", value, "", ""))
    check = realtime.get("check_chain")
    if check:
        value = f"max |diff| {check['max_abs_diff']:.2e} over {check['requests']}"
        out.append(("chain = sidecar scores", value, "", ""))
    return out


def _run_rows(name: str, run: dict, label: str, goals: dict) -> list[tuple[str, str, str, str]]:
    """One open-loop run: its latency (against the targets at the full rate) and what it achieved."""
    out = []
    prefix = f"{label}{name} @{run['rate']:g}/s"
    if not label:
        p50, p99 = goals.get(f"{name}.p50"), goals.get(f"{name}.p99")
        out.append(
            (f"{prefix} p50", f"{run['p50_ms']} ms", (p50 or {}).get("target", ""), _ok(p50))
        )
        out.append((f"{prefix} p95", f"{run['p95_ms']} ms", "", ""))
        value = f"{run['p99_ms']} ms ({_spread(run)})"
        out.append((f"{prefix} p99", value, (p99 or {}).get("target", ""), _ok(p99)))
    else:
        out.append((prefix, _ms(run), "", ""))
    cpu = [f"{k.removesuffix('_cpu_us')} {v:g}" for k, v in run.items() if k.endswith("_cpu_us")]
    achieved = (
        f"{run['achieved_rate']}/s, errors {run['errors'] or 0}; CPU us/req: {', '.join(cpu)}"
    )
    goal = goals.get(f"{name}.rate") if not label else None
    out.append((f"{prefix} achieved", achieved, (goal or {}).get("target", ""), _ok(goal)))
    return out


def _max_rows(realtime: dict) -> list[tuple[str, str, str, str]]:
    out = []
    for name, best in realtime.get("max_throughput", {}).items():
        levels = ", ".join(
            f"c{r['concurrency']} {r['throughput']}/s p99 {r['p99_ms']}" for r in best["levels"]
        )
        if best["throughput"] is not None:
            value = f"{best['throughput']}/s ({levels})"
        else:
            value = f"none within the p99 bound ({levels})"
        out.append((f"{name} max throughput", value, f"p99 <= {best['sane_p99_ms']:g} ms", ""))
    return out


def _skew_rows(report: dict, goals: dict) -> list[tuple[str, str, str, str]]:
    out = []
    for mode, skew in report.get("skew", {}).items():
        mismatches = sum(skew["mismatch_causes"].values())
        value = f"{skew['seconds']} s (flush {skew['flush_seconds']} + report "
        value += f"{skew['report_seconds']}; {mismatches:,} mismatching values)"
        goal = goals[f"skew.{mode}"]
        out.append((f"skew report {mode}", value, goal["target"], _ok(goal)))
    return out


def _cpu_rows(report: dict, realtime: dict, goals: dict) -> list[tuple[str, str, str, str]]:
    """CPU per prediction: batch (with and without the model load, and the model alone), then
    realtime per mode."""
    out = []
    batch = report.get("batch")
    if batch:
        value = f"{batch['cpu_us_per_row_excl_load']} us/row excl. model load"
        value += f" ({batch['cpu_us_per_row']} incl.; {batch['rows']:,} rows, {batch['days']} days)"
        out.append(("batch CPU/prediction (fraud)", value, "", ""))
        value = f"{batch['model_only_cpu_us_per_row']} us/row ({batch['model_only_rows']:,} rows)"
        out.append(("batch CPU/prediction, model only", value, "", ""))
    for mode in report.get("modes", []):
        run = realtime["at_rate"][mode]
        goal = goals.get(f"{mode}.cpu_ratio")
        value = f"{realtime_cpu_us(run)} us"
        if "consumer_cpu_us" in run:
            value += f" (sidecar {run['server_cpu_us']} + consumer {run['consumer_cpu_us']})"
        value += f"; + redis {run['redis_cpu_us']} us"
        if goal:
            value += f"; ratio {goal['value']}x"
        out.append((f"realtime CPU/prediction {mode}", value, USUAL_RATIO if goal else "", ""))
    return out


WRK_P50_OVER_FLOOR_MS, WRK_P99_MS, WRK_THROUGHPUT_SHARE = 0.4, 2.5, 0.5


def _wrk_rows(realtime: dict) -> list[tuple[str, str, str, str]]:
    """wrk, the outside client: each mode against the bare-Flask floor of the same run."""
    runs = realtime.get("wrk", {})
    if "skipped" in runs:
        return [("wrk (outside client)", "skipped", runs["skipped"], "")]
    floor = runs.get("floor")
    if not floor:
        return []
    base_p50, base_rps = floor["c1"].get("p50_ms"), floor["c4"]["requests_per_second"]
    out = [
        (
            "wrk floor (bare Flask)",
            f"c1 p50 {base_p50} / p99 {floor['c1'].get('p99_ms')} ms; c4 {base_rps}/s",
            "",
            "",
        )
    ]
    for name, run in runs.items():
        if name == "floor":
            continue
        one, four = run["c1"], run["c4"]
        over = round(one["p50_ms"] - base_p50, 3)
        fast = over <= WRK_P50_OVER_FLOOR_MS and one["p99_ms"] <= WRK_P99_MS and not one["non_2xx"]
        out.append(
            (
                f"wrk c1 {name}",
                f"p50 {one['p50_ms']} (floor +{over}) / p99 {one['p99_ms']} ms",
                f"p50 <= floor + {WRK_P50_OVER_FLOOR_MS} ms, p99 <= {WRK_P99_MS} ms",
                "yes" if fast else "NO",
            )
        )
        share = four["requests_per_second"] / base_rps if base_rps else 0.0
        out.append(
            (
                f"wrk c4 {name}",
                f"{four['requests_per_second']}/s ({share:.0%} of the floor)",
                f">= {WRK_THROUGHPUT_SHARE:.0%} of the floor",
                "yes" if share >= WRK_THROUGHPUT_SHARE and not four["non_2xx"] else "NO",
            )
        )
    return out


def rows(report: dict) -> list[tuple[str, str, str, str]]:
    goals, realtime = report["targets"], report.get("realtime", {})
    out = _floor_rows(realtime) + _wrk_rows(realtime)
    for label, runs in (
        ("", realtime.get("at_rate", {})),
        ("common ", realtime.get("at_common_rate", {})),
    ):
        for name, run in runs.items():
            out += _run_rows(name, run, label, goals)
    out += _max_rows(realtime)
    for name, goal in goals.items():
        if ".speedup_" in name:
            out.append((name.replace(".", " "), f"{goal['value']}x", goal["target"], _ok(goal)))
    out += _skew_rows(report, goals)
    out += _cpu_rows(report, realtime, goals)
    for mode, why in report.get("skipped_modes", {}).items():
        out.append((f"{mode} mode", "skipped", why, ""))
    for phase, error in report.get("errors", {}).items():
        out.append((f"{phase} phase", "FAILED", error[:120], "NO"))
    return out


def print_table(report: dict) -> None:
    table = [("measure", "measured", "target", "ok"), *rows(report)]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for i, row in enumerate(table):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    redis = "a 3-primary Redis Cluster" if report["parameters"].get("redis_cluster") else "1 Redis"
    print(f"{report['machine']['nproc']} cores, {redis}; {report.get('seconds')} s in all.")
    print("Conditions:")
    for c in report.get("conditions", []):
        busy = f", CPU busy {c['busy_pct']}%, steal {c['steal_pct']}%" if "busy_pct" in c else ""
        load = ", ".join(f"{v:.1f}" for v in c["loadavg"])
        print(f"  after {c['phase']:<9} load {load}{busy}, 1M-add loop {c['python_loop_ms']} ms")
    for mode, prof in report.get("profile", {}).items():
        steps = ", ".join(f"{k} {v}" for k, v in prof["steps_cum_us"].items())
        print(f"profile {mode}: {prof['cpu_us_per_request']} us CPU/request in-process ({steps})")
