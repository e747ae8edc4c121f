"""`make demo`: the batch loop on embedded defaults, run through Airflow.

1. simulate transactions; import the history as an initial load and drop the last day's file where
   the `ingest` DAG picks it up;
2. run the DAGs in order with `airflow dags test` (a real metadata DB under var/airflow):
   ingest → build_features → train_fraud → train_churn_30d → batch_score;
3. print a summary: rows, features, model metrics, champion versions, the riskiest transactions
   of the day and the churn score distribution.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from skewless import importer, ingest, orchestration, redis_server, settings, simulate, warehouse
from skewless.features import GROUPS

DAGS = ("ingest", "build_features", "train_fraud", "train_churn_30d", "batch_score")


def prepare_data(cfg: settings.Settings, *, customers: int, days: int, seed: int) -> date:
    """Simulates, imports all days but the last, stages the last one. Returns the last day."""
    frame = simulate.generate(
        customers=customers,
        days=days,
        seed=seed,
        label_delay_days=cfg.label_delay.total_seconds() / 86400,
    )
    last_day = frame["event_timestamp"].max().date()
    history = frame[frame["event_timestamp"].dt.date < last_day]
    path = simulate.write(history, cfg.var_dir / "raw" / f"history_seed{seed}.parquet")
    summary = importer.import_transactions(path, replace=True)
    print(f"history: {summary['rows_loaded']:,} transactions imported up to {last_day}")
    staged = ingest.stage_days(frame[frame["event_timestamp"].dt.date == last_day], cfg)
    print(f"staged for ingest: {staged[last_day]}")
    return last_day


def run_dags(day: date, env: dict[str, str], log_dir: Path) -> list[dict]:
    airflow = str(Path(sys.executable).parent / "airflow")
    log_dir.mkdir(parents=True, exist_ok=True)
    timings = []
    for dag_id in DAGS:
        started = time.perf_counter()
        log = log_dir / f"{dag_id}.log"
        with log.open("w") as out:
            proc = subprocess.run(
                [
                    airflow,
                    "dags",
                    "test",
                    dag_id,
                    day.isoformat(),
                    "--conf",
                    json.dumps({"day": day.isoformat()}),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        seconds = time.perf_counter() - started
        state = "success" if proc.returncode == 0 else "failed"
        print(f"  {dag_id:<16} {state:<8} {seconds:6.1f}s  (log: {log})")
        timings.append({"dag_id": dag_id, "state": state, "seconds": round(seconds, 1)})
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise SystemExit(f"DAG {dag_id} failed for {day}:\n{tail}")
    return timings


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


_REPORTED = ("roc_auc", "average_precision", "precision_at_k_per_day", "recall_at_threshold")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skewless demo", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    # churn needs a 30-day label horizon, a 30-day gap and a week of holdout before the cutoff
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fresh", action="store_true", help="start from an empty var/ first")
    args = parser.parse_args(argv)

    cfg = settings.load()
    if args.fresh and cfg.var_dir.exists():
        redis_server.stop(cfg.redis_dir)
        shutil.rmtree(cfg.var_dir)
    started = time.perf_counter()
    day = prepare_data(cfg, customers=args.customers, days=args.days, seed=args.seed)
    env = orchestration.prepare_airflow(cfg)
    owns_redis = cfg.redis_url is None and redis_server.status(cfg.redis_dir) is None
    redis_url = redis_server.resolve_url(cfg.redis_url, cfg.redis_dir)
    print(f"Redis: {redis_url}\nAirflow ({env['AIRFLOW_HOME']}), DAG runs for {day}:")
    try:
        run_dags(day, env, cfg.var_dir / "demo")
        result = summary(cfg, day)
    finally:
        if owns_redis:
            redis_server.stop(cfg.redis_dir)
    _print(result, time.perf_counter() - started)
    return 0


def _print(result: dict, seconds: float) -> None:
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
    print(f"\ndone in {seconds:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
