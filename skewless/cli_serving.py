"""The serving-side `skewless` commands: serve, replay, stream-consumer, flush-log, skew-report.

skewless.cli adds them to its parser with ``add_commands``. This module must not import
skewless.cli; the small helpers both need live here."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from skewless import modes, settings


def print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the sidecar under gunicorn (serving/gunicorn_conf.py) in the foreground (exec),
    once its dependencies answer: Redis, and MLflow when it loads a model (bounded, logged
    retry; exit 1 naming the one that does not)."""
    import logging
    import os

    from skewless import dependencies, redis_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = settings.load()
    settings.effective()  # validates the sidecar's and gunicorn's variables too, before exec
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    if args.mode:
        env["SKEWLESS_SERVING_MODE"] = args.mode
    default_host, _, default_port = settings.get("SKEWLESS_BIND").rpartition(":")
    host = args.host or default_host
    port = args.port or int(default_port)
    workers = args.workers or settings.get("SKEWLESS_WORKERS")
    threads = args.threads or settings.get("SKEWLESS_THREADS")
    try:
        if not env.get("SKEWLESS_REDIS_URL"):
            env["SKEWLESS_REDIS_URL"] = redis_server.resolve_url(cfg.redis_url, cfg.redis_dir)
        attempts, delay = cfg.dependency_attempts, cfg.dependency_delay
        dependencies.wait_for_redis(env["SKEWLESS_REDIS_URL"], attempts, delay)
        if settings.get("SKEWLESS_LOAD_MODEL"):
            dependencies.wait_for_mlflow(cfg.mlflow_tracking_uri, attempts, delay)
    except (dependencies.DependencyUnavailable, redis_server.RedisUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    root = settings.PROJECT_ROOT
    argv = [gunicorn, "--config", str(root / "serving" / "gunicorn_conf.py")]
    argv += ["--pythonpath", str(root), "--bind", f"{host}:{port}"]
    argv += ["--workers", str(workers), "--threads", str(threads)]
    mode = env.get("SKEWLESS_SERVING_MODE", modes.DEFAULT)
    redis_shown = settings.mask(env["SKEWLESS_REDIS_URL"])
    print(f"sidecar on http://{host}:{port} (mode {mode}, redis {redis_shown})")
    sys.stdout.flush()
    os.execve(gunicorn, argv, env)
    return 0  # pragma: no cover - execve does not return


def cmd_replay(args: argparse.Namespace) -> int:
    from skewless import redis_server, replay

    try:
        summary = replay.replay(
            args.date,
            mode=args.mode,
            rate=args.rate,
            url=args.url,
            bootstrap=not args.no_bootstrap,
        )
    except (replay.ReplayError, redis_server.RedisUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_json(summary)
    return 0


def cmd_stream_consumer(args: argparse.Namespace) -> int:
    """Runs the streaming consumer (serving/stream_consumer.py) in the foreground until
    SIGTERM/SIGINT."""
    import logging

    from serving import stream_consumer
    from skewless import redis_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("feast").setLevel(logging.WARNING)  # a line per registry refresh otherwise
    try:
        return stream_consumer.main(
            lag=args.lag, allowed_lateness=args.allowed_lateness, batch=args.batch, name=args.name
        )
    except (RuntimeError, redis_server.RedisUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_flush_log(args: argparse.Namespace) -> int:
    from monitoring import flush
    from skewless import redis_server

    try:
        print_json(flush.flush_log(settings.load()))
    except redis_server.RedisUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_skew_report(args: argparse.Namespace) -> int:
    from monitoring import skew, skew_publish

    cfg = settings.load()
    try:
        report = skew.skew_report(args.date, mode=args.mode, cfg=cfg)
    except skew.SkewReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:  # the plot data (histograms) stays in the written JSON file
        print_json({k: v for k, v in report.items() if k != "histograms"})
    else:
        print(skew.format_table(report))
    notes = sys.stderr if args.json else sys.stdout
    if args.mlflow:
        out = skew_publish.publish(report, cfg, html_path=args.html)
        print(
            f"\nhtml: {out['html']}\njson: {out['json']}\nmlflow run: {out['run_id']}", file=notes
        )
    elif args.html:
        print(f"\nhtml: {skew_publish.write_html(report, args.html)}", file=notes)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from models.batch_score import MissingFeatures
    from models.registry import NoChampion
    from skewless import pql, predict, redis_server

    if args.out and Path(args.out).suffix not in (".csv", ".parquet", ".json"):
        print(f"error: --out {args.out}: expected a .csv, .parquet or .json file", file=sys.stderr)
        return 2
    cfg = settings.load()
    try:
        query = predict.parse(args.query, cfg, train=args.train)
        result = predict.run(query, cfg, day=args.date, mode=args.mode, train=args.train)
    except pql.QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (
        predict.PredictError,
        redis_server.RedisUnavailable,
        NoChampion,
        MissingFeatures,
        ValueError,  # --train: data that cannot train the model (too short, one class)
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        out = Path(args.out)
        if out.suffix == ".json":
            out.write_text(json.dumps(result.as_dict(), indent=2, default=str))
        elif out.suffix == ".csv":
            result.rows.to_csv(out, index=False)
        else:
            result.rows.to_parquet(out, index=False)
    if args.json:
        print_json(result.as_dict(limit=None if args.out is None else args.limit))
        return 0
    if result.training:
        _print_training(query, result.training)
    day = f", day {result.day}" if result.day else ""
    print(
        f"{query.task.name} ({result.path}{day}): {len(result.rows):,} rows in "
        f"{result.seconds:.3f} s" + (f", written to {args.out}" if args.out else "")
    )
    if len(result.rows):
        shown = result.rows.head(args.limit)
        print(shown.to_string(index=False))
        if len(result.rows) > args.limit:
            print(f"... {len(result.rows) - args.limit:,} more (--limit, --out FILE)")
    return 0


def _print_training(query, training: dict) -> None:
    run, built = training["training"], training["training_set"]
    if built:
        print(
            f"declared {query.task.name}: {query.task.query} for each {query.task.entity.name} "
            f"(features and rows of {query.task.based_on}); training set {built['table']}: "
            f"{built['rows']:,} rows, {built['positives']:,} positive"
        )
    metrics = run["metrics"]
    state = "champion" if run["promoted"] else f"not promoted (champion: {run['champion_version']})"
    print(
        f"trained {run['model_name']} version {run['model_version']}, {state}: "
        f"ROC AUC {metrics['roc_auc']:.3f}, AP {metrics['average_precision']:.3f} on "
        f"{run['test_rows']:,} holdout rows"
    )


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="run a predictive query: PREDICT <task> FOR [EACH] <table>.<key> ...",
        description="Runs a predictive query on the pipeline (docs/predict.md): FOR EACH "
        "batch-scores the day like the batch_score DAG; FOR <key> = '<id>' (or IN (...)) looks up "
        "a batch task's nightly score, or scores a transaction now through the sidecar's path.",
    )
    p.add_argument("query", help='e.g. "PREDICT churn_30d FOR EACH customers.customer_id"')
    p.add_argument(
        "--date", type=date.fromisoformat, help="FOR EACH: the day to score (default: the latest)"
    )
    p.add_argument("--mode", choices=modes.NAMES, help="realtime: the serving mode")
    p.add_argument(
        "--train",
        action="store_true",
        help="train the target's model first; a target no task predicts declares a new task "
        "(trained, registered in MLflow, then scored)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", help="write the predictions to FILE (.csv, .parquet or .json)")
    p.add_argument("--limit", type=int, default=10, help="rows printed (default 10)")
    p.set_defaults(func=cmd_predict)


def _add_serve_and_replay(sub) -> None:
    p = sub.add_parser("serve", help="run the realtime sidecar under gunicorn")
    p.add_argument("--host", help="default: from SKEWLESS_BIND (127.0.0.1)")
    p.add_argument("--port", type=int, help="default: from SKEWLESS_BIND (8000)")
    p.add_argument("--mode", choices=modes.NAMES, help="default feature mode")
    p.add_argument("--workers", type=int, help="gunicorn worker processes (SKEWLESS_WORKERS, 2)")
    p.add_argument("--threads", type=int, help="threads per worker, gthread (SKEWLESS_THREADS, 1)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("replay", help="send a day's transactions to the sidecar over HTTP")
    p.add_argument("--date", type=date.fromisoformat, help="default: the last day with events")
    p.add_argument("--mode", choices=modes.NAMES, help="default: the sidecar's")
    p.add_argument(
        "--rate", type=float, help="requests per second (default: as fast as it answers)"
    )
    p.add_argument(
        "--url",
        nargs="+",
        default=["http://127.0.0.1:8000"],
        help="the sidecar's base URL; several replicas take the requests in turn",
    )
    p.add_argument(
        "--no-bootstrap", action="store_true", help="leave the exact-mode state as it is"
    )
    p.set_defaults(func=cmd_replay)


def _add_stream_consumer(sub) -> None:
    p = sub.add_parser(
        "stream-consumer",
        help="read the event stream, keep windowed features, push them through Feast",
    )
    p.add_argument(
        "--lag",
        type=float,
        help="processing lag in seconds of event time (SKEWLESS_STREAM_LAG_SECONDS, 10)",
    )
    p.add_argument(
        "--allowed-lateness",
        type=float,
        help="drop events older than the watermark minus this many seconds "
        "(SKEWLESS_STREAM_ALLOWED_LATENESS_SECONDS, 3600)",
    )
    p.add_argument("--batch", type=int, default=500, help="entries per stream read")
    p.add_argument(
        "--name", default="consumer-1", help="consumer name in the group (a restart resumes it)"
    )
    p.set_defaults(func=cmd_stream_consumer)


def _add_monitoring_commands(sub) -> None:
    p = sub.add_parser("flush-log", help="write the serving log into serving.serving_log")
    p.set_defaults(func=cmd_flush_log)

    p = sub.add_parser("skew-report", help="served features and scores vs the offline truth")
    p.add_argument("--date", type=date.fromisoformat, help="default: the last served day")
    p.add_argument("--mode", choices=modes.NAMES, help="default: the most served")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", type=Path, help="write the HTML page (with plots) here")
    p.add_argument(
        "--mlflow",
        action="store_true",
        help="log a run in the MLflow experiment skew_report, with the JSON and HTML "
        "(default paths var/reports/skew_<mode>_<date>.{json,html})",
    )
    p.set_defaults(func=cmd_skew_report)


def add_commands(sub) -> None:
    """Adds serve, replay, predict, stream-consumer, flush-log and skew-report to ``sub``, the
    subparsers object of the `skewless` parser."""
    _add_serve_and_replay(sub)
    _add_predict(sub)
    _add_stream_consumer(sub)
    _add_monitoring_commands(sub)
