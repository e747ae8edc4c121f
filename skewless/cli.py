"""The `skewless` command. Heavy libraries (feast, mlflow, dbt) are imported inside each command."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from skewless import cli_serving, modes, settings, tasks
from skewless.cli_serving import print_json


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time, expected e.g. 2025-03-01 or 2025-03-01T12:00"
        ) from None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def cmd_generate(args: argparse.Namespace) -> int:
    from skewless import importer, simulate

    cfg = settings.load()
    frame = simulate.generate(
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        start=args.start,
        tx_per_day=args.tx_per_day,
        late_fraction=args.late_fraction,
        label_delay_days=cfg.label_delay.total_seconds() / 86400,
    )
    out = args.out or cfg.var_dir / "raw" / f"transactions_seed{args.seed}.parquet"
    simulate.write(frame, out)
    summary = {"file": str(out), "rows": len(frame), "fraud_rate": float(frame["is_fraud"].mean())}
    if not args.no_import:
        summary["import"] = importer.import_transactions(out)
    print_json(summary)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from skewless import importer

    try:
        mapping = importer.parse_mapping(args.map or [])
        summary = importer.import_transactions(args.file, mapping)
    except importer.TransactionImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_json(summary)
    return 0


def cmd_dbtgen(args: argparse.Namespace) -> int:
    from skewless import dbtgen

    return dbtgen.main(["--check"] if args.check else [])


def cmd_build(args: argparse.Namespace) -> int:
    from skewless import pipeline

    try:
        pipeline.build(settings.load(), as_of=args.as_of)
    except pipeline.StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_dbt(args: argparse.Namespace) -> int:
    from skewless import pipeline

    try:
        print(pipeline.dbt(settings.load(), args.dbt_args, as_of=args.as_of))
    except pipeline.StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    from skewless import pipeline

    cfg = settings.load()
    end = args.end or _default_cutoff(cfg)
    print_json(pipeline.materialize(cfg, start=args.start, end=end, writer=args.writer))
    return 0


def cmd_spark_load(args: argparse.Namespace) -> int:
    from skewless import schemas, spark

    cfg = settings.load()
    rows = spark.load_raw(cfg)
    print_json({"table": schemas.TRANSACTIONS_TABLE, "rows": rows, "spark_dir": str(cfg.spark_dir)})
    return 0


def _default_cutoff(cfg: settings.Settings) -> datetime:
    """Midnight after the last event, the cutoff dbt uses by default."""
    from skewless import warehouse

    return datetime.combine(
        warehouse.last_event_day(cfg.warehouse_path) + timedelta(days=1), time()
    )


def cmd_redis(args: argparse.Namespace) -> int:
    from skewless import redis_server

    cfg = settings.load()
    if cfg.redis_url:
        alive = redis_server.ping(cfg.redis_url)
        print(f"REDIS_URL is set ({cfg.redis_url}); skewless starts no server. reachable: {alive}")
        return 0 if alive or args.action != "status" else 1
    if args.action == "start":
        server = redis_server.start(cfg.redis_dir, cluster=cfg.redis_cluster)
        print(server.url)
        if server.cluster:
            print(f"a Redis Cluster of {len(server.ports)} primaries on ports {server.ports}")
    elif args.action == "stop":
        print("stopped" if redis_server.stop(cfg.redis_dir) else "not running")
    else:
        server = redis_server.status(cfg.redis_dir)
        print(server.url if server else "not running")
        return 0 if server else 1
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """The effective configuration (settings.TABLE), every value validated, secrets masked.

    ``--shell`` prints the variables dbt and Feast read as export lines to eval: those are
    unmasked, since a masked password would not connect."""
    import os

    from skewless import orchestration, pipeline

    rows = settings.effective()
    cfg = settings.load()
    if args.shell:
        env = pipeline.tool_env(cfg, cfg.redis_url)
        keys = sorted(k for k in env if k.startswith(("SKEWLESS_", "DBT_", "REDIS_")))
        for key in keys:
            print(f"export {key}={json.dumps(env[key])}")
        return 0
    airflow = orchestration.airflow_env(cfg)
    airflow.update((k, v) for k, v in os.environ.items() if k.startswith("AIRFLOW__"))
    if args.json:
        data = {
            row.setting.env: {
                "value": row.shown,
                "source": row.source,
                "component": row.setting.component,
            }
            for row in rows
        }
        data["airflow"] = {k: _mask_airflow(k, v) for k, v in sorted(airflow.items())}
        print_json(data)
        return 0
    width = max(len(row.setting.env) for row in rows)
    for row in rows:
        value = row.shown if row.text is not None else f"({row.setting.unset or 'unset'})"
        print(f"{row.setting.env:<{width}}  {value}  [{row.source}]")
    print("\nAirflow (orchestration.airflow_env; AIRFLOW__* variables override):")
    for key, value in sorted(airflow.items()):
        print(f"  {key}={_mask_airflow(key, value)}")
    return 0


def _mask_airflow(key: str, value: str) -> str:
    if key.endswith(("_SECRET", "_SECRET_KEY", "_FERNET_KEY", "_PASSWORD", "_TOKEN")):
        return settings.MASK if value else value
    return settings.mask(value) if "://" in value else value


def cmd_airflow(args: argparse.Namespace) -> int:
    import os

    from skewless import orchestration

    env = orchestration.prepare_airflow(settings.load())
    airflow = str(Path(sys.executable).parent / "airflow")
    if not args.airflow_args:
        print("Airflow is ready: " + ", ".join(f"{k}={env[k]}" for k in ("AIRFLOW_HOME",)))
        return 0
    os.execve(airflow, [airflow, *args.airflow_args], env)
    return 0  # pragma: no cover - execve does not return


def cmd_mlflow_ui(args: argparse.Namespace) -> int:
    import os

    cfg = settings.load()
    cfg.mlflow_artifact_root.mkdir(parents=True, exist_ok=True)
    mlflow = str(Path(sys.executable).parent / "mlflow")
    argv = [mlflow, "ui", "--backend-store-uri", cfg.mlflow_tracking_uri]
    argv += ["--default-artifact-root", str(cfg.mlflow_artifact_root)]
    argv += ["--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI on http://{args.host}:{args.port} over {cfg.mlflow_tracking_uri}")
    os.execv(mlflow, argv)
    return 0  # pragma: no cover - execv does not return


def cmd_train(args: argparse.Namespace) -> int:
    from models import training

    return training.run(args)


def cmd_score(args: argparse.Namespace) -> int:
    from models import batch_score

    return batch_score.run(args)


def _add_data_commands(sub) -> None:
    """generate, import, dbtgen, build, dbt, materialize, redis."""
    p = sub.add_parser("generate", help="simulate transactions and import them")
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1))
    p.add_argument("--tx-per-day", type=float, default=0.5, help="mean per customer and day")
    p.add_argument("--late-fraction", type=float, default=0.02)
    p.add_argument("--out", type=Path, help="where to write the file (default under var/raw)")
    p.add_argument("--no-import", action="store_true", help="only write the file")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("import", help="load a CSV or Parquet file into the warehouse")
    p.add_argument("kind", choices=["transactions"])
    p.add_argument("file", type=Path)
    p.add_argument(
        "--map",
        action="append",
        metavar="canonical=source",
        help="map a canonical column to the file's column, e.g. --map transaction_id=TX_ID",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("dbtgen", help="write the dbt feature models from skewless/features.py")
    p.add_argument("--check", action="store_true", help="fail if they are out of date")
    p.set_defaults(func=cmd_dbtgen)

    p = sub.add_parser("build", help="dbt build of the features, then feast apply")
    p.add_argument("--as-of", type=_timestamp, help="batch cutoff (default: after the last day)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("dbt", help="run a dbt command with the configured warehouse")
    p.add_argument("--as-of", type=_timestamp)
    p.add_argument("dbt_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_dbt)

    p = sub.add_parser("materialize", help="load the latest features into Redis")
    p.add_argument("--start", type=_timestamp, help="default: all rows up to --end")
    p.add_argument("--end", type=_timestamp, help="default: the cutoff after the last event")
    p.add_argument(
        "--writer",
        choices=("skewless", "feast"),
        default="skewless",
        help="skewless: Feast's Redis layout written directly (same bytes, faster; the embedded"
        " offline store on one Redis server, else feast); feast: FeatureStore.materialize",
    )
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser(
        "spark-load",
        help="copy raw.transactions from the DuckDB warehouse into the spark target's tables",
    )
    p.set_defaults(func=cmd_spark_load)

    p = sub.add_parser("redis", help="the private Redis server under var/redis")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_redis)


def _add_tool_commands(sub) -> None:
    """airflow, demo, mlflow-ui."""
    p = sub.add_parser(
        "airflow", help="run the airflow CLI on the embedded setup (migrates, pools, dbt manifest)"
    )
    p.add_argument(
        "airflow_args", nargs=argparse.REMAINDER, help="e.g. dags test ingest 2025-03-31"
    )
    p.set_defaults(func=cmd_airflow)

    # `skewless demo …` is parsed by skewless.demo itself (see main()).
    sub.add_parser("demo", help="the batch loop through Airflow on simulated data", add_help=False)

    p = sub.add_parser("mlflow-ui", help="the MLflow UI over the configured tracking store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_mlflow_ui)


def _add_model_commands(sub) -> None:
    """train, score."""
    p = sub.add_parser("train", help="train a model on event-time windows, log it to MLflow")
    p.add_argument("task", choices=tasks.names())
    for name in ("train-start", "train-end", "test-start", "test-end"):
        p.add_argument(f"--{name}", type=_timestamp, help="UTC date or time; ends are exclusive")
    p.add_argument("--as-of", type=_timestamp, help="use only labels known at this time")
    p.add_argument(
        "--source",
        choices=[
            "warehouse",
            "feast",
            "arrival",
            "serving-log",
            *(f"serving-log:{m}" for m in modes.NAMES),
        ],
        help="where features come from: the dbt training set (default), Feast's point-in-time"
        " retrieval, the arrival-aware training set (only events that had arrived by each"
        " scoring, as exact mode serves), or the serving log (as served; :<mode> for one mode's"
        " requests)",
    )
    p.add_argument("--no-register", action="store_true", help="log the run, register no version")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="batch-score a day with the champion model")
    p.add_argument("task", choices=tasks.names())
    p.add_argument("--date", type=date.fromisoformat, help="default: the last day with events")
    p.set_defaults(func=cmd_score)


def _add_config_command(sub) -> None:
    p = sub.add_parser("config", help="print the effective configuration, secrets masked")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument(
        "--shell", action="store_true", help="dbt/Feast variables as export lines (unmasked)"
    )
    p.set_defaults(func=cmd_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skewless", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_tool_commands(sub)
    _add_model_commands(sub)
    cli_serving.add_commands(sub)  # serve, replay, stream-consumer, flush-log, skew-report
    _add_config_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from skewless import demo

        return demo.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (settings.SettingError, ValueError, FileNotFoundError) as exc:
        # bad settings, arguments or data (an empty warehouse, a missing file): a message, no trace
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
