"""`make demo`: the batch loop on embedded defaults, run through Airflow, then the sidecar.

1. simulate transactions; import the history as an initial load and drop the last two days' files
   where the `ingest` DAG picks them up;
2. start Airflow (api-server, scheduler, dag-processor on the SQLite metadata DB under var/airflow,
   each in its own process group), unpause the DAGs and trigger `ingest` for the day before the last
   over the REST API; its assets start build_features → train_<task> → batch_score → skew_report;
   print each run's state, day and real duration as Airflow records them, then stop Airflow;
3. print a summary: rows, features, model metrics, champion versions, the riskiest transactions
   of the day and the churn score distribution;
4. the held-out last day: ingest it and rebuild the offline truth with dbt (Redis keeps the snapshot
   materialized at the batch cutoff), start the sidecar under gunicorn and the streaming consumer,
   replay the day in `exact`, `streaming` then `materialized` mode, flush the serving log and print
   the skew report of each mode (and write its HTML page, logged to MLflow).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from skewless import (
    airflow_api,
    importer,
    ingest,
    modes,
    orchestration,
    processes,
    redis_server,
    settings,
    simulate,
    warehouse,
)
from skewless.features import GROUPS
from skewless.tasks import TASKS

DAGS = (
    "ingest",
    "build_features",
    *(f"train_{name}" for name in TASKS),
    "batch_score",
    "skew_report",
)


def prepare_data(cfg: settings.Settings, *, customers: int, days: int, seed: int) -> date:
    """Simulates, imports all days before the last two, stages those two for `ingest`.
    Returns the last day (the held-out day); the batch loop runs for the day before it."""
    frame = simulate.generate(
        customers=customers,
        days=days,
        seed=seed,
        label_delay_days=cfg.label_delay.total_seconds() / 86400,
    )
    last_day = frame["event_timestamp"].max().date()
    batch_day = last_day - timedelta(days=1)
    history = frame[frame["event_timestamp"].dt.date < batch_day]
    path = simulate.write(history, cfg.var_dir / "raw" / f"history_seed{seed}.parquet")
    summary = importer.import_transactions(path, replace=True)
    print(f"history: {summary['rows_loaded']:,} transactions imported before {batch_day}")
    staged = ingest.stage_days(frame[frame["event_timestamp"].dt.date >= batch_day], cfg)
    print(f"staged for ingest: {', '.join(str(p) for p in staged.values())}")
    return last_day


def run_dags(day: date, env: dict[str, str], log_dir: Path) -> list[airflow_api.Run]:
    """The batch loop through a running Airflow: unpauses the DAGs, triggers ``ingest`` for
    ``day`` over the REST API (the day in the run's conf; the run starts now) and follows the asset
    chain it starts to ``skew_report``."""
    print(f"Airflow components starting (logs: {log_dir})")
    with airflow_api.running(env, log_dir) as url:
        client = airflow_api.Client(url)
        run_id = f"demo__{day}__{datetime.now(UTC):%Y%m%dT%H%M%S}"
        runs = airflow_api.run_chain(client, DAGS, day.isoformat(), run_id)
        waiting = client.runs("ingest", run_type="scheduled", state="running")
    print(f"\n{'DAG':<16} {'state':<8} {'day':<10} {'duration':>9}  tasks")
    for run in runs:
        seconds = "" if run.seconds is None else f"{run.seconds:.1f}s"
        tasks = ", ".join(f"{n} {state}" for state, n in sorted(run.tasks.items()))
        print(f"{run.dag_id:<16} {run.state:<8} {run.day or '':<10} {seconds:>9}  {tasks}")
    for scheduled in waiting:  # unpausing a @daily DAG schedules its latest interval at once
        print(
            f"(ingest's scheduled run {scheduled['dag_run_id']} waits for that day's drop file;"
            " skipped after 6 hours if it never lands)"
        )
    failed = [run for run in runs if run.state != "success"]
    if failed:
        logs = Path(env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
        raise SystemExit(
            f"DAG {failed[0].dag_id} ended {failed[0].state} for {day}: task logs under "
            f"{logs / f'dag_id={failed[0].dag_id}'}, component logs in {log_dir}"
        )
    return runs


def realtime(cfg: settings.Settings, held_out: date, port: int) -> dict:
    """Lands the held-out day, rebuilds the offline truth (no materialization: Redis keeps the
    batch snapshot), serves, replays the day in each mode and reports the skew."""
    from monitoring import flush, skew
    from skewless import pipeline, replay

    ingest.land_day(held_out, cfg=cfg)
    pipeline.dbt(cfg, ["build"], as_of=orchestration.cutoff(held_out))
    url = f"http://127.0.0.1:{port}"
    log_dir = cfg.var_dir / "demo"
    server = _start(["serve", "--port", str(port)], log_dir / "sidecar.log", lambda: _ready(port))
    consumer = None
    reports = {}
    try:
        consumer = _start(["stream-consumer"], log_dir / "stream-consumer.log", lambda: True)
        # exact first: every scored request also enters the exact-mode state, which must not
        # already hold the day's events when the exact replay starts. The streaming replay
        # bootstraps again: its reset makes the consumer restart from the state before the day.
        for mode in modes.MODES:  # exact first (see skewless/modes.py)
            sent = replay.replay(
                held_out, mode=mode.name, url=url, cfg=cfg, bootstrap=mode.bootstrap
            )
            print(
                f"  replay {mode.name:<12} {sent['ok']}/{sent['sent']} ok  p50 {sent['p50_ms']} ms"
            )
        flush.flush_log(cfg)
        for name in modes.NAMES:
            reports[name] = skew.skew_report(held_out, mode=name, cfg=cfg)
    finally:
        if consumer is not None:
            processes.stop_group(consumer)
        processes.stop_group(server)
    return reports


def _start(argv: list[str], log_path: Path, ready) -> subprocess.Popen:
    """``skewless <argv>`` in its own process group (gunicorn's workers stop with it), logging to
    ``log_path``; returns once ``ready()`` is true."""
    skewless = str(Path(sys.executable).parent / "skewless")
    log = log_path.open("w")
    proc = subprocess.Popen(
        [skewless, *argv], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"skewless {argv[0]} exited ({proc.returncode}); log: {log_path}")
        if ready():
            return proc
        time.sleep(0.5)
    processes.stop_group(proc)
    raise SystemExit(f"skewless {argv[0]} was not ready after 120 s; log: {log_path}")


def _ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def summary(cfg: settings.Settings, day: date) -> dict:
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        scalar = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        out = {
            "day": day.isoformat(),
            "raw_transactions": scalar("select count(*) from raw.transactions"),
            "quarantined": scalar("select count(*) from raw.transactions_quarantine"),
            "feature_rows": {g.name: scalar(f"select count(*) from {g.name}") for g in GROUPS},
            "features": sum(len(g.features) for g in GROUPS),
            "riskiest": con.execute(
                "select s.transaction_id, s.customer_id, s.merchant_id, round(s.fraud_probability, 4)"
                " as p, t.amount, t.is_fraud from predictions.fraud_scores s"
                " join raw.transactions t using (transaction_id)"
                " where s.score_date = ? order by s.fraud_probability desc limit 10",
                [day],
            ).fetchdf(),
            "churn": con.execute(
                "select count(*) as customers, round(avg(churn_probability), 4) as mean,"
                " round(quantile_cont(churn_probability, 0.5), 4) as p50,"
                " round(quantile_cont(churn_probability, 0.9), 4) as p90,"
                " count(*) filter (where churn_probability >= 0.5) as above_0_5"
                " from predictions.churn_scores where score_date = ?",
                [day],
            ).fetchdf(),
        }
    finally:
        con.close()
    out["models"] = _champions(cfg)
    return out


def _champions(cfg: settings.Settings) -> dict:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    client = MlflowClient()
    models = {}
    for name in orchestration.MODEL_URIS:
        version = client.get_model_version_by_alias(name, "champion")
        metrics = client.get_run(version.run_id).data.metrics
        models[name] = {
            "champion_version": version.version,
            **{k: round(v, 4) for k, v in metrics.items() if k in _REPORTED},
        }
    return models


_REPORTED = ("roc_auc", "average_precision", "card_precision_at_k", "precision_at_k_per_day")
_REPORTED += ("recall_at_threshold", "threshold")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skewless demo", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    # churn needs a 30-day label horizon, a 30-day gap and a week of holdout before the cutoff
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fresh", action="store_true", help="start from an empty var/ first")
    parser.add_argument("--port", type=int, default=8000, help="the sidecar's port")
    parser.add_argument("--batch-only", action="store_true", help="skip the sidecar and replay")
    args = parser.parse_args(argv)

    cfg = settings.load()
    if args.fresh and cfg.var_dir.exists():
        redis_server.stop(cfg.redis_dir)
        shutil.rmtree(cfg.var_dir)
    started = time.perf_counter()
    held_out = prepare_data(cfg, customers=args.customers, days=args.days, seed=args.seed)
    day = held_out - timedelta(days=1)
    env = orchestration.prepare_airflow(cfg)
    owns_redis = cfg.redis_url is None and redis_server.status(cfg.redis_dir) is None
    redis_url = redis_server.resolve_url(cfg.redis_url, cfg.redis_dir)
    print(f"Redis: {redis_url}\nAirflow ({env['AIRFLOW_HOME']}), DAG runs for {day}:")
    try:
        run_dags(day, env, cfg.var_dir / "demo" / "airflow")
        result = summary(cfg, day)
        _print(result)
        if not args.batch_only:
            print(f"\nsidecar on 127.0.0.1:{args.port}, held-out day {held_out}:")
            for mode, report in realtime(cfg, held_out, args.port).items():
                _print_skew(mode, report)
            training_sources(cfg, held_out)
        if not args.batch_only:  # the realtime query runs the sidecar's app in this process
            riskiest = str(result["riskiest"]["transaction_id"].iloc[0])
            predictive_queries(cfg, day, riskiest, redis_url)
    finally:
        if owns_redis:
            redis_server.stop(cfg.redis_dir)
    print(f"\ndone in {time.perf_counter() - started:.0f}s")
    return 0


# The article's two queries and what it reports for them (batch: 120K customers, realtime: one
# transaction), printed beside what they take here.
ARTICLE = {
    "batch": ("PREDICT churn_30d FOR EACH customers.customer_id", "120K customers in 45 s"),
    "realtime": ("PREDICT fraud_probability FOR transactions.transaction_id = '{}'", "120 ms"),
}


def predictive_queries(cfg: settings.Settings, day: date, transaction_id: str, redis_url: str):
    """Runs the article's two predictive queries on the demo's data and prints their answers."""
    from skewless import pql, predict

    print("\n=== predictive queries (skewless predict) ===")
    text, claimed = ARTICLE["batch"]
    batch = predict.run(pql.parse(text), cfg, day=day, redis_url=redis_url)
    print(f"{text}\n  {len(batch.rows):,} customers scored for {day} in {batch.seconds:.2f} s"
          f" (the article: {claimed}); model churn_30d v{batch.summary['model_version']}")  # fmt: skip
    text, claimed = ARTICLE["realtime"]
    text = text.format(transaction_id)
    now = predict.run(pql.parse(text), cfg, redis_url=redis_url)
    row = now.rows.iloc[0]
    print(f"{text}\n  fraud_probability {row['fraud_probability']:.4f} ({row['decision']},"
          f" {row['mode']} mode) in {row['latency_ms']:.1f} ms for the request"
          f" (the article: {claimed}); {now.seconds:.2f} s with the sidecar's start")  # fmt: skip


def _print(result: dict) -> None:
    print(f"\n=== skewless demo: batch results for {result['day']} ===")
    print(
        f"raw transactions: {result['raw_transactions']:,}  quarantined: {result['quarantined']:,}"
    )
    print(f"features: {result['features']} in {len(result['feature_rows'])} groups")
    for name, rows in result["feature_rows"].items():
        print(f"  {name:<32} {rows:>10,} rows")
    for name, model in result["models"].items():
        metrics = "  ".join(f"{k}={v}" for k, v in model.items() if k != "champion_version")
        print(f"model {name}: champion v{model['champion_version']}  {metrics}")
    print("\nriskiest transactions of the day (fraud_probability, actual label):")
    print(result["riskiest"].to_string(index=False))
    print("\nchurn_30d score distribution:")
    print(result["churn"].to_string(index=False))


def training_sources(cfg: settings.Settings, held_out: date) -> None:
    """Training sources against serving modes on the held-out day: a model per source on the
    default training window, scoring the day as each mode served it."""
    from models import splits
    from monitoring import skew_sources

    windows = splits.resolve_windows(skew_sources.TASK, cfg=cfg)
    start = datetime.combine(held_out, datetime.min.time())
    print(f"\n=== training source x serving mode, held-out day {held_out} ===")
    try:
        result = skew_sources.compare(
            cfg, (windows.train_start, windows.train_end), (start, start + timedelta(days=1))
        )
    except ValueError as exc:
        print(f"skipped: {exc}")
        return
    print(skew_sources.format_table(result))
    print(
        "one day is a small test set: `make bench BENCH=skew` serves a training week and a test"
        " week in every mode (var/bench/skew.json)"
    )


def _print_skew(mode: str, report: dict) -> None:
    """Prints the report and writes its JSON and HTML page, logged to MLflow (skew_report)."""
    from monitoring import skew, skew_publish

    print(f"\n=== {mode} mode ===")
    print(skew.format_table(report))
    out = skew_publish.publish(report, settings.load())
    print(f"\npage: {out['html']}\njson: {out['json']}")
    print(f"MLflow run {out['run_id']} in experiment {skew_publish.EXPERIMENT} (make mlflow)")


if __name__ == "__main__":
    sys.exit(main())
