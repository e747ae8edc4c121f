"""What removes training-serving skew, measured: each training source against each serving mode.

One run on simulated card data with late events (``late_fraction``, 2 % by default: minutes to
hours late), through the real pipeline:

1. `dbt build` of everything; a champion trained on the warehouse source (the sidecar needs one).
2. The sidecar (gunicorn) and the streaming consumer start; every served day, as the nightly batch
   and the day would run it: the transaction-grain feature models rebuilt with the day's midnight
   as their cutoff and materialized into Redis (materialized mode serves that snapshot), then the
   day replayed in arrival order in each mode (exact, streaming, materialized). Served days: the
   training week and the test week.
3. `dbt build` again to the end of the data (the offline truth), the serving log flushed.
4. ``monitoring.skew_sources.compare``: one LightGBM per training source on the training week
   (models/config.yaml, as `skewless train`): ``warehouse`` (the offline truth; ``feast`` gives
   the same frame, a test holds it), ``arrival`` (the arrival-aware training set: what the online
   path could have seen) and ``serving-log:<mode>`` (the vectors each mode served). Each model's
   alert threshold is derived by the committed rule from its own source's test rows, as training
   does.
5. Each model scores the test week's transactions as each mode served them (their logged feature
   vectors), and as the offline truth has them: average precision, recall at its threshold, card
   precision@k per day (k = top_k_per_day), ROC AUC; beside each mode, the skew report's mean
   feature match rate over the test days and its mismatch causes.

Writes var/bench/skew.json and prints the table and the best source per mode:
`python -m bench.skew` (``make bench BENCH=skew``). Everything runs under var/bench/run-skew (wiped
at start, deleted after a successful run unless ``--keep``); servers run in their own process
groups and stop by group.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = PROJECT_ROOT / "var" / "bench" / "run-skew"
DEFAULT_OUT = PROJECT_ROOT / "var" / "bench" / "skew.json"
START = date(2025, 1, 1)
WEEK = timedelta(days=7)
FOREIGN_ENV = ("SKEWLESS_WAREHOUSE", "SKEWLESS_FEATURE_DIR", "SKEWLESS_FEAST_REGISTRY")
FOREIGN_ENV += (
    "REDIS_URL",
    "MLFLOW_TRACKING_URI",
    "SKEWLESS_MODEL_CONFIG",
    "SKEWLESS_SERVING_MODE",
)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def prepare(args, cfg, url: str) -> dict:
    """Simulated transactions imported and built; the windows of the split."""
    from skewless import importer, pipeline, simulate

    frame = simulate.generate(
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        start=START,
        tx_per_day=args.tx_per_day,
        late_fraction=args.late_fraction,
        churn_fraction=0.0,
    )
    path = simulate.write(frame, RUN_DIR / "raw" / "transactions.parquet")
    importer.import_transactions(path)
    pipeline.build(cfg, redis_url=url)
    last = START + timedelta(days=args.days - 1)
    test_start = _midnight(last) + timedelta(days=1) - WEEK
    train_end = test_start - WEEK  # a week's gap: the label delay
    train_start = train_end - WEEK
    late = frame["arrival_timestamp"].notna() & (
        frame["arrival_timestamp"] > frame["event_timestamp"]
    )
    return {
        "transactions": len(frame),
        "late_events": int(late.sum()),
        "frauds": int(frame["is_fraud"].sum()),
        "train": (train_start, train_end),
        "test": (test_start, test_start + WEEK),
    }


def serve(cfg, url: str, days: list[date], port: int) -> dict:
    """Each day: the nightly batch (the transaction-grain models rebuilt with the day's midnight as
    cutoff, materialized), then the day replayed in every mode against the running sidecar."""
    from bench.procs import Servers
    from skewless import dbtgen_arrival, modes, pipeline, replay

    models = [g.name for g in dbtgen_arrival.groups()]
    nightly = [*models, *(f"feast_{name}" for name in models)]
    replays = {m: [] for m in modes.NAMES}
    seconds = {"nightly": 0.0, "replay": 0.0}
    skewless = str(Path(sys.executable).parent / "skewless")
    env = dict(os.environ)
    with Servers(RUN_DIR / "logs") as servers:
        servers.start(
            "sidecar",
            [skewless, "serve", "--port", str(port)],
            env,
            port=port,
            ready_path="/readyz",
        )
        servers.start("consumer", [skewless, "stream-consumer"], env, port=0, ready_path=None)
        for day in days:
            started = time.perf_counter()
            midnight = _midnight(day)
            pipeline.dbt(cfg, ["build", "--select", *nightly], as_of=midnight)
            pipeline.materialize(cfg, end=midnight, redis_url=url)
            seconds["nightly"] += time.perf_counter() - started
            started = time.perf_counter()
            for mode in modes.MODES:  # exact first (skewless/modes.py)
                sent = replay.replay(
                    day,
                    mode=mode.name,
                    url=f"http://127.0.0.1:{port}",
                    cfg=cfg,
                    bootstrap=mode.bootstrap,
                    redis_url=url,
                )
                if sent["ok"] != sent["sent"]:
                    raise RuntimeError(f"replay {day} {mode.name}: {sent['errors']}")
                replays[mode.name].append(sent["p50_ms"])
            seconds["replay"] += time.perf_counter() - started
            print(f"  served {day}: nightly + 3 modes", flush=True)
    return {
        "days": len(days),
        "replay_p50_ms": {m: float(np.median(v)) for m, v in replays.items()},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def match_rates(cfg, windows: dict) -> dict:
    """Per mode: the skew report's feature match rate, averaged over features and test days, and
    its mismatch causes summed."""
    from monitoring import skew
    from skewless import modes

    start, end = windows["test"]
    out = {}
    for mode in modes.NAMES:
        rates, causes = [], {}
        for day in _days(start.date(), (end - timedelta(days=1)).date()):
            report = skew.skew_report(day, mode=mode, cfg=cfg)
            rates += [f["match_rate"] for f in report["features"].values()]
            for cause, n in report["causes"].items():
                causes[cause] = causes.get(cause, 0) + n
        out[mode] = {"match_rate": round(float(np.mean(rates)), 4), "causes": causes}
    return out


def run(args) -> dict:
    from bench.procs import free_port, isolate
    from models import training
    from monitoring import flush, skew_sources
    from skewless import pipeline, redis_server, settings

    isolate(RUN_DIR, FOREIGN_ENV)
    cfg = settings.load()
    url = redis_server.resolve_url(cfg.redis_url, cfg.redis_dir)
    started = time.perf_counter()
    try:
        windows = prepare(args, cfg, url)
        train_start, train_end = windows["train"]
        test_start, test_end = windows["test"]
        champion = training.train(
            "fraud",
            train_start=train_start,
            train_end=train_end,
            test_start=test_start,
            test_end=test_end,
            cfg=cfg,
        )
        days = _days(train_start.date(), (train_end - timedelta(days=1)).date())
        days += _days(test_start.date(), (test_end - timedelta(days=1)).date())
        serving = serve(cfg, url, days, free_port())
        pipeline.dbt(cfg, ["build"])  # the offline truth, to the end of the data
        flushed = flush.flush_log(cfg, redis_url=url)
        scored = skew_sources.compare(cfg, windows["train"], windows["test"])
        matches = match_rates(cfg, windows)
    finally:
        redis_server.stop(cfg.redis_dir)
    report = {
        "config": {
            "customers": args.customers,
            "days": args.days,
            "tx_per_day": args.tx_per_day,
            "late_fraction": args.late_fraction,
            "seed": args.seed,
        },
        "data": {k: v for k, v in windows.items() if k not in ("train", "test")},
        "windows": {k: [t.isoformat() for t in windows[k]] for k in ("train", "test")},
        "champion_version": champion["model_version"],
        "serving": serving,
        "served_requests": flushed["table_rows"],
        "modes": matches,
        "sources": scored,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not args.keep:
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    return report


def print_table(report: dict) -> None:
    from monitoring import skew_sources

    data = report["data"]
    print(
        f"\n{data['transactions']:,} transactions, {data['late_events']:,} late,"
        f" {data['frauds']:,} frauds; served {report['serving']['days']} days x"
        f" {len(report['modes'])} modes ({report['served_requests']:,} requests)"
    )
    print("skew report, test week: mean feature match rate (mismatch causes)")
    for mode, row in report["modes"].items():
        print(f"  {mode:<13} {row['match_rate']:.4f}  {row['causes']}")
    print("\ntest week: " + skew_sources.format_table(report["sources"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.skew", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument(
        "--days", type=int, default=51, help="30 days of history, then train, gap and test weeks"
    )
    parser.add_argument("--tx-per-day", type=float, default=1.0, help="mean per card and day")
    parser.add_argument("--late-fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help=f"keep {RUN_DIR}")
    args = parser.parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print_table(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
