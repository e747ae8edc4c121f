"""Benchmark of the batch feature pipeline against its speed targets.

simulate -> CSV import through a column mapping -> dbt build -> feast apply -> materialize into
Redis, each timed (wall and CPU). Runs in its own var dir (var/bench/run-features, wiped at start
and, unless --keep, after a successful run) with its own private Redis, stopped before exiting.
Writes a JSON report and prints a table: `python -m bench.features --customers 2000 --days 30`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = PROJECT_ROOT / "var" / "bench" / "run-features"
DEFAULT_OUT = PROJECT_ROOT / "var" / "bench" / "features.json"
# The "any file through --map" path: the handbook's column names (arrival/label keep theirs).
CSV_MAP = ("transaction_id=TX_ID", "event_timestamp=TX_DATETIME", "customer_id=CUSTOMER_ID")
CSV_MAP += ("merchant_id=TERMINAL_ID", "amount=TX_AMOUNT", "is_fraud=TX_FRAUD")
# Targets, seconds: dbt feature build and whole pipeline over 1.75M transactions,
# materializing 1M entity rows into Redis.
DBT_TARGET, PIPELINE_TARGET, MATERIALIZE_TARGET, MATERIALIZE_TARGET_ROWS = 30, 300, 30, 1_000_000
PIPELINE_STEPS = ("simulate", "import", "dbt_build", "feast_apply", "materialize")
PIPELINE_STEPS += ("train_fraud", "train_churn_30d", "score_fraud", "score_churn")
# Target: score 120K customers in <= 2 s (the model already loaded).
CHURN_SCORE_TARGET = 2.0
# The article's batch predictive query and its figure: 120K customers in 45 s.
ARTICLE_BATCH_QUERY = "PREDICT churn_30d FOR EACH customers.customer_id"
ARTICLE_BATCH_SECONDS = 45.0
# Settings that would point the bench at someone else's warehouse, registry or Redis.
FOREIGN_ENV = ("SKEWLESS_WAREHOUSE", "SKEWLESS_FEATURE_DIR", "SKEWLESS_FEAST_REGISTRY")
FOREIGN_ENV += ("REDIS_URL",)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(fn, *args, **kwargs):
    """(fn's value, wall seconds and CPU seconds of this process and of its finished children)."""
    wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    value = fn(*args, **kwargs)
    return value, {
        "seconds": round(time.perf_counter() - wall, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "child_cpu_seconds": round(_children_cpu() - children, 3),
    }


def record(report: dict, step: str, timing: dict) -> None:
    """Adds one run of a step; the step keeps the numbers of its fastest run."""
    best = report["steps"].get(step)
    runs = (best or {}).get("runs_seconds", []) + [timing["seconds"]]
    if best is None or timing["seconds"] < best["seconds"]:
        best = timing
    report["steps"][step] = {**best, "runs_seconds": runs}


def machine() -> dict:
    dists = ("duckdb", "dbt-core", "dbt-duckdb", "feast", "pandas", "redis")  # all pinned deps
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),  # other work on the machine skews the timings
        # Without cached bytecode every dbt / feast process compiles its imports (seconds each).
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "versions": {dist: metadata.version(dist) for dist in dists},
    }


def simulate_and_import(cfg, args, report: dict) -> None:
    import duckdb

    from skewless import importer, simulate

    size = {k: getattr(args, k) for k in ("customers", "days", "seed", "tx_per_day")}

    def generate():
        frame = simulate.generate(**size, label_delay_days=cfg.label_delay / timedelta(days=1))
        simulate.write(frame, cfg.var_dir / "raw" / "transactions.parquet")
        return frame

    frame, timing = timed(generate)
    record(report, "simulate", timing)
    report["counts"]["transactions"] = len(frame)

    mapping = importer.parse_mapping(list(CSV_MAP))
    csv = cfg.var_dir / "raw" / "transactions_renamed.csv"
    select = ", ".join(f'"{c}" AS "{mapping.get(c, c)}"' for c in frame.columns)
    target = str(csv).replace("'", "''")
    with duckdb.connect() as con:
        con.register("frame", frame)
        _, timing = timed(con.execute, f"COPY (SELECT {select} FROM frame) TO '{target}' (HEADER)")
    record(report, "csv_write", timing)

    summary, timing = timed(importer.import_transactions, csv, mapping)
    timing.update({k: summary[k] for k in ("rows_read", "rows_loaded", "rows_quarantined")})
    timing["rows_per_second"] = round(summary["rows_read"] / timing["seconds"])
    record(report, "import", timing)
    if summary["rows_quarantined"]:
        print(f"warning: import quarantined rows: {summary['quarantine_reasons']}", file=sys.stderr)


def dbt_build(cfg, report: dict) -> dict:
    """Times `dbt build`, with dbt's own timings; returns each model's relation name."""
    from skewless import pipeline

    _, timing = timed(pipeline.dbt, cfg, ["build"])
    results = json.loads((cfg.var_dir / "dbt" / "target" / "run_results.json").read_text())
    models = {
        r["unique_id"].split(".")[-1]: r
        for r in results["results"]
        if r["unique_id"].startswith("model.")
    }
    tests = [r["execution_time"] for r in results["results"] if r["unique_id"].startswith("test.")]
    timing["dbt_elapsed_seconds"] = round(results["elapsed_time"], 3)
    timing["models"] = {name: round(r["execution_time"], 3) for name, r in models.items()}
    timing["tests"] = {"count": len(tests), "seconds_sum": round(sum(tests), 3)}
    record(report, "dbt_build", timing)
    return {name: r["relation_name"] for name, r in models.items()}


def feature_counts(cfg, relations: dict, report: dict) -> tuple[datetime, dict]:
    """Counts the models' rows; returns the cutoff and each feature view's entities up to it."""
    from skewless import warehouse
    from skewless.features import GROUPS

    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        report["counts"]["rows"] = {
            name: con.execute(f"SELECT count(*) FROM {rel}").fetchone()[0]
            for name, rel in relations.items()
        }
        windows = relations["customer_transaction_windows"]
        (cutoff,) = con.execute(f"SELECT max(event_timestamp) FROM {windows}").fetchone()
        entities = {
            g.name: con.execute(
                f"SELECT count(DISTINCT {g.entity.join_key}) FROM {relations[g.name]}"
                " WHERE event_timestamp <= $cutoff",
                {"cutoff": cutoff},
            ).fetchone()[0]
            for g in GROUPS
        }
    finally:
        con.close()
    return cutoff, entities


def materialize(
    cfg, url: str, cutoff: datetime, entities: dict, report: dict, writer: str = "skewless"
) -> None:
    """One materialization into an empty Redis: step ``materialize`` with the project's writer,
    ``materialize_feast`` with Feast's own (the floor it is measured against, same run)."""
    import redis

    from skewless import pipeline

    with redis.Redis.from_url(url) as client:
        client.flushdb()  # every repeat loads an empty Redis
        before = client.info("cpu")
        result, timing = timed(pipeline.materialize, cfg, end=cutoff, redis_url=url, writer=writer)
        cpu, memory, rows = client.info("cpu"), client.info("memory"), sum(entities.values())
        timing.update(
            store_materialize_seconds=result["seconds"],  # without importing feast etc.
            cutoff=cutoff.isoformat(),
            entity_rows=rows,
            entity_rows_per_view=entities,
            rows_per_second=round(rows / timing["seconds"]),
            redis_cpu_seconds=round(
                sum(cpu[k] - before[k] for k in ("used_cpu_user", "used_cpu_sys")), 3
            ),
            redis_keys=client.dbsize(),
            redis_used_memory=memory["used_memory"],
            redis_used_memory_human=memory["used_memory_human"],
        )
    record(report, "materialize" if writer == "skewless" else f"materialize_{writer}", timing)


def train_and_score(cfg, url: str, report: dict) -> None:
    """Both models trained with their default windows, then the last day batch-scored."""
    from models import batch_score, training

    for task in ("fraud", "churn_30d"):
        result, timing = timed(training.train, task, cfg=cfg)
        record(report, f"train_{task}", timing)
        report["counts"][f"train_{task}_rows"] = result["train_rows"]
        report[f"metrics_{task}"] = {
            k: round(v, 4) for k, v in result["metrics"].items() if isinstance(v, float)
        }
    day = batch_score.last_event_day(cfg)
    fraud, timing = timed(batch_score.score, "fraud", day, cfg=cfg)
    record(report, "score_fraud", timing)
    churn, timing = timed(batch_score.score, "churn_30d", day, cfg=cfg, redis_url=url)
    record(report, "score_churn", timing)
    report["counts"]["scored_transactions"] = fraud["rows"]
    report["counts"]["scored_customers"] = churn["rows"]
    report["scoring_breakdown"] = {"fraud": fraud["seconds"], "churn": churn["seconds"]}
    # the article's batch query, end to end: parse, batch scoring (model load included), read back
    from skewless import pql, predict

    query = pql.parse(ARTICLE_BATCH_QUERY)
    answer, timing = timed(predict.run, query, cfg, day=day, redis_url=url)
    record(report, "predict_churn", timing)
    report["counts"]["predicted_customers"] = len(answer.rows)


def targets(report: dict) -> dict:
    steps, n = report["steps"], report["counts"]["transactions"]
    mat = steps["materialize"]
    per_million = mat["seconds"] * MATERIALIZE_TARGET_ROWS / max(mat["entity_rows"], 1)
    total = sum(steps[s]["seconds"] for s in PIPELINE_STEPS)
    feast = steps.get("materialize_feast")
    versus = f", feast materialize {feast['seconds'] / mat['seconds']:.1f}x slower" if feast else ""
    checks = {  # name: (target, measured seconds, limit)
        "dbt_build": (f"over 1.75M tx ({n:,} here)", steps["dbt_build"]["seconds"], DBT_TARGET),
        "materialize": (
            f"per 1M rows ({per_million:.1f} s{versus})",
            per_million,
            MATERIALIZE_TARGET,
        ),
        "pipeline": ("over 1.75M tx, sum of the steps", total, PIPELINE_TARGET),
    }
    churn = report.get("scoring_breakdown", {}).get("churn")
    if churn:
        scored = churn["total"] - churn["load_model"]
        customers = report["counts"]["scored_customers"]
        checks["score_churn"] = (
            f"for 120K customers, model loaded ({customers:,} here: {scored:.2f} s)",
            scored * 120_000 / max(customers, 1),
            CHURN_SCORE_TARGET,
        )
    if "predict_churn" in steps:
        customers = report["counts"]["predicted_customers"]
        checks["predict_churn"] = (
            f"(the article's 120K customers; {customers:,} here: `{ARTICLE_BATCH_QUERY}`)",
            steps["predict_churn"]["seconds"],
            ARTICLE_BATCH_SECONDS,
        )
    return {
        name: {"target": f"<= {limit:g} s {text}", "seconds": round(value, 3), "ok": value <= limit}
        for name, (text, value, limit) in checks.items()
    }


def print_table(report: dict) -> None:
    goals = report["targets"]
    rows = [("step", "seconds", "cpu s", "target", "ok")]
    for name, step in [*report["steps"].items(), ("pipeline", goals["pipeline"])]:
        cpu = (
            f"{step['cpu_seconds'] + step['child_cpu_seconds']:.2f}"
            if "cpu_seconds" in step
            else ""
        )
        goal = goals.get(name, {})
        ok = {True: "yes", False: "NO"}.get(goal.get("ok"), "")
        rows.append((name, f"{step['seconds']:.2f}", cpu, goal.get("target", ""), ok))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for i, row in enumerate(rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def run(args: argparse.Namespace) -> dict:
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    os.environ["SKEWLESS_VAR_DIR"] = str(RUN_DIR)
    from skewless import pipeline, redis_server, settings

    cfg = settings.load()
    if redis_server.status(cfg.redis_dir):  # left running by an interrupted run
        redis_server.stop(cfg.redis_dir)
    shutil.rmtree(cfg.var_dir, ignore_errors=True)
    report = {
        "benchmark": "features",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("out", "keep")},
        "steps": {},
        "counts": {},
    }
    server = redis_server.start(cfg.redis_dir)
    try:
        simulate_and_import(cfg, args, report)
        for _ in range(args.repeats):
            relations = dbt_build(cfg, report)
            cutoff, entities = feature_counts(cfg, relations, report)
            record(report, "feast_apply", timed(pipeline.feast_apply, cfg, server.url)[1])
            materialize(cfg, server.url, cutoff, entities, report)
            if args.feast_materialize:
                materialize(cfg, server.url, cutoff, entities, report, writer="feast")
        train_and_score(cfg, server.url, report)
    finally:
        redis_server.stop(cfg.redis_dir)
    report["loadavg_at_end"] = os.getloadavg()
    report["targets"] = targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__)
    parser.add_argument("--customers", type=int, default=120_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--tx-per-day", type=float, default=0.172, help="≈1.75M rows by default")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=1, help="runs of dbt build..materialize")
    parser.add_argument(
        "--no-feast-materialize",
        dest="feast_materialize",
        action="store_false",
        help="skip the run of Feast's own materialization (the writer's floor)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report")
    parser.add_argument("--keep", action="store_true", help=f"keep {RUN_DIR} after the run")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    save(run(args), args.out, print_table, None if args.keep else RUN_DIR)
    return 0


def save(report: dict, out: Path, print_table, remove: Path | None) -> None:
    """Writes the JSON report, prints its table and removes the run's directory (unless kept)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    print(f"report: {out}")
    if remove is not None:
        shutil.rmtree(remove, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
