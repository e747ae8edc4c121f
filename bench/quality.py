"""Fraud model quality on standard splits, beside the usual baselines, in one run.

Card data from the simulator with the handbook's parameters (5,000 cards, 10,000 terminals, 2
transactions per card and day, no churn, no late events), written with the handbook's column names
and without label times, then imported through a column mapping as a user's file would be (labels
known 7 days after the event). One `dbt build` up to the training set; then the standard split of
the Reproducible Machine Learning for Credit Card Fraud Detection handbook: train on 7 days, a 7-day
gap (the label delay), test on the next 7 days; ``--splits`` of them a week apart (3 by default,
the last ending with the data), each model's metrics averaged over them, since one week of test
data moves AP by about 0.01-0.02 from one split to the next. On the same features and rows:

- ``lightgbm``: the project's model (``models.training.fit``, models/config.yaml), as `skewless train`;
- ``logistic_regression``: scikit-learn, missing values imputed by the median with indicators,
  standardized;
- ``random_forest``: scikit-learn, 100 trees of depth <= 20 (the handbook's baseline), missing
  values handled by the trees.

Each gets ROC AUC, average precision and card precision@k (k = top_k_per_day; per day the k
riskiest cards, found compromised cards leave the next days). With ``--ablation``, LightGBM is
trained again without each feature family (one declared aggregate, or one kind of request-time
feature) to show what each is worth. Writes var/bench/quality.json and prints a table:
`python -m bench.quality` (``make bench BENCH=quality``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = PROJECT_ROOT / "var" / "bench" / "run-quality"
DEFAULT_OUT = PROJECT_ROOT / "var" / "bench" / "quality.json"
START = date(2018, 4, 1)  # the handbook's first day
SPLIT_DAYS = 7  # train, gap and test: one week each
# The handbook's file layout: its column names, numeric ids, no label or arrival times.
HANDBOOK_COLUMNS = {
    "transaction_id": "TRANSACTION_ID",
    "event_timestamp": "TX_DATETIME",
    "customer_id": "CUSTOMER_ID",
    "merchant_id": "TERMINAL_ID",
    "amount": "TX_AMOUNT",
    "is_fraud": "TX_FRAUD",
}
# Published on the handbook's own data with this split (ch. 3.4 and 5.x): context for the table.
PUBLISHED = {
    "logistic_regression": {"roc_auc": 0.871, "average_precision": 0.606},
    "random_forest": {"roc_auc": 0.867, "average_precision": 0.658},
    "tuned_gradient_boosting": {"roc_auc": 0.872, "average_precision": 0.692},
}
FOREIGN_ENV = ("SKEWLESS_WAREHOUSE", "SKEWLESS_FEATURE_DIR", "SKEWLESS_FEAST_REGISTRY")
FOREIGN_ENV += ("REDIS_URL", "MLFLOW_TRACKING_URI", "SKEWLESS_MODEL_CONFIG")


def handbook_file(args, path: Path) -> dict:
    """Simulates the card data and writes it in the handbook's layout; returns its counts."""
    from skewless import simulate

    frame = simulate.generate(
        customers=args.customers,
        terminals=2 * args.customers,
        days=args.days,
        seed=args.seed,
        start=START,
        tx_per_day=args.tx_per_day,
        churn_fraction=0.0,
        late_fraction=0.0,
    )
    out = frame[list(HANDBOOK_COLUMNS)].rename(columns=HANDBOOK_COLUMNS)
    for column in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID"):
        out[column] = out[column].str[1:].astype("int64")  # c000042 -> 42, as in the handbook
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path, index=False)
    return {"transactions": len(out), "fraud_rate": round(float(out["TX_FRAUD"].mean()), 5)}


def standard_splits(days: int, count: int) -> list[dict[str, datetime]]:
    """``count`` standard splits (train 7 days, gap 7, test 7; ends exclusive), the last one
    ending with the data and each earlier one a week before the next."""
    first = 37  # days of window history before the first training day
    if count < 1 or days < first + 3 * SPLIT_DAYS + (count - 1) * SPLIT_DAYS:
        raise SystemExit(
            f"--days {days} holds no {count} splits: need >= {first + (count + 2) * SPLIT_DAYS}"
        )
    end = datetime.combine(START, datetime.min.time()) + timedelta(days=days)
    week = timedelta(days=SPLIT_DAYS)
    out = []
    for i in reversed(range(count)):
        test_end = end - i * week
        out.append(
            {
                "train_start": test_end - 3 * week,
                "train_end": test_end - 2 * week,
                "test_start": test_end - week,
                "test_end": test_end,
            }
        )
    return out


def baselines(seed: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic_regression": make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True),
            StandardScaler(),
            LogisticRegression(max_iter=2000, random_state=seed),
        ),
        "random_forest": RandomForestClassifier(
            n_estimators=100, max_depth=20, random_state=seed, n_jobs=2
        ),
    }


def feature_families(columns: list[str]) -> dict[str, list[str]]:
    """Ablation units from the declaration: each aggregate of each group (all its windows), every
    label-based rate at once, the amount ratios and the time flags of the request."""
    from skewless.features import AMOUNT_RATIOS, FEATURE_SERVICES, Agg

    service = next(s for s in FEATURE_SERVICES if s.model_name == "fraud")
    families: dict[str, list[str]] = {}
    for group in service.groups:
        for aggregate, _, name in group.window_features():
            families.setdefault(aggregate.name, []).append(name)
            if aggregate.agg is Agg.LABELED_RATE:  # what known labels are worth, all together
                families.setdefault("every_label_based_rate", []).append(name)
    families["amount_vs_usual"] = [r.name for r in AMOUNT_RATIOS]
    families["time_flags"] = ["hour_of_day", "is_weekend", "is_night"]
    return {k: [c for c in v if c in columns] for k, v in families.items()}


def scores_of(model, train, test, columns) -> tuple[object, float]:
    started = time.perf_counter()
    model.fit(train.X[columns].to_numpy(), train.y.to_numpy())
    seconds = time.perf_counter() - started
    return model.predict_proba(test.X[columns].to_numpy())[:, 1], seconds


def evaluate(scores, test, k: int, seconds: float) -> dict:
    from models import evaluation

    metrics = evaluation.metrics(
        test.y.to_numpy(),
        scores,
        test.keys["event_timestamp"],
        threshold=0.5,
        k=k,
        cards=test.keys["customer_id"],
    )
    return {
        "roc_auc": round(metrics["roc_auc"], 4),
        "average_precision": round(metrics["average_precision"], 4),
        "card_precision_at_k": round(metrics["card_precision_at_k"], 4),
        "fit_seconds": round(seconds, 2),
    }


def prepare(args, cfg, splits: list[dict]) -> tuple[dict, object, float]:
    """The handbook file imported through its mapping, `dbt build` up to the training set, and
    the rows of every split's windows. Returns the file's counts, the rows and the seconds taken
    (imports not included)."""
    from models import datasets
    from skewless import importer, pipeline

    started = time.perf_counter()
    raw = RUN_DIR / "raw" / "handbook.parquet"
    data = handbook_file(args, raw)
    mapping = importer.parse_mapping([f"{c}={h}" for c, h in HANDBOOK_COLUMNS.items()])
    summary = importer.import_transactions(raw, mapping)
    if summary["rows_loaded"] != data["transactions"]:
        raise SystemExit(f"import quarantined rows: {summary['quarantine_reasons']}")
    pipeline.dbt(cfg, ["build", "--select", "+fraud_training_set"])
    windows = [(s["train_start"], s["train_end"]) for s in splits]
    windows += [(s["test_start"], s["test_end"]) for s in splits]
    every = datasets.load_windows("fraud", windows, cfg=cfg)
    return data, every, time.perf_counter() - started


def measure_split(args, split: dict, every, task_config, k: int) -> dict:
    """LightGBM and the baselines trained on the split's training week, scored on its test week
    (and the ablation with ``--ablation``)."""
    from models import datasets, training

    columns = list(every.X.columns)
    train = every.subset(split["train_start"], split["train_end"])
    test = every.subset(split["test_start"], split["test_end"])
    models: dict[str, dict] = {}
    fit_started = time.perf_counter()
    booster = training.fit(train, task_config)
    seconds = time.perf_counter() - fit_started
    models["lightgbm"] = evaluate(datasets.predict(booster, test.X), test, k, seconds)
    for name, model in baselines(args.seed).items():
        scores, seconds = scores_of(model, train, test, columns)
        models[name] = evaluate(scores, test, k, seconds)
    entry = {
        "split": {key: value.isoformat() for key, value in split.items()},
        "rows": {"train": len(train), "test": len(test)},
        "frauds": {"train": int(train.y.sum()), "test": int(test.y.sum())},
        "models": models,
    }
    if args.ablation:
        entry["ablation"] = ablation(train, test, task_config, k, models["lightgbm"])
    print(f"split {split['train_start']:%Y-%m-%d}: {json.dumps(models)}", file=sys.stderr)
    return entry


def mean_models(per_split: list[dict]) -> dict:
    """Each model's metrics, the mean over the splits."""
    return {
        name: {
            metric: round(float(np.mean([e["models"][name][metric] for e in per_split])), 4)
            for metric in per_split[0]["models"][name]
        }
        for name in per_split[0]["models"]
    }


def mean_ablation(per_split: list[dict]) -> dict:
    """Each family's metric changes, the mean over the splits."""
    return {
        family: {
            key: (
                value
                if key == "removed"
                else round(float(np.mean([e["ablation"][family][key] for e in per_split])), 4)
            )
            for key, value in row.items()
        }
        for family, row in per_split[0]["ablation"].items()
    }


def run(args) -> dict:
    from bench.procs import isolate

    isolate(RUN_DIR, FOREIGN_ENV)
    from models.config import model_config
    from skewless import settings

    cfg = settings.load()
    task_config = model_config(cfg, "fraud")
    k = int(task_config["top_k_per_day"])
    splits = standard_splits(args.days, args.splits)
    data, every, prepared = prepare(args, cfg, splits)
    columns = list(every.X.columns)
    per_split = [measure_split(args, split, every, task_config, k) for split in splits]
    models = mean_models(per_split)
    report = {
        "models": models,  # the mean over the splits
        "splits": per_split,
        "published_on_handbook_data": PUBLISHED,
        "data": {**data, "customers": args.customers, "days": args.days, "seed": args.seed},
        "k": k,
        "features": columns,
        "null_share": {c: round(float(every.X[c].isna().mean()), 4) for c in columns},
        "prepare_seconds": round(prepared, 1),
    }
    ours = models["lightgbm"]
    report["lightgbm_beats_baselines"] = all(
        ours[metric] > models[name][metric]
        for name in ("logistic_regression", "random_forest")
        for metric in ("average_precision", "card_precision_at_k")
    )
    if args.ablation:
        report["ablation"] = mean_ablation(per_split)
    if not args.keep:
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    return report


def ablation(train, test, task_config, k: int, full: dict) -> dict:
    """LightGBM without each feature family: the change of each metric against all features."""
    from models import datasets, training

    out = {}
    for family, names in feature_families(list(train.X.columns)).items():
        if not names:
            continue
        kept = [c for c in train.X.columns if c not in names]
        subset = [
            datasets.TrainingFrame(f.task, f.X[kept], f.y, f.keys, f.source) for f in (train, test)
        ]
        booster = training.fit(subset[0], task_config)
        metrics = evaluate(datasets.predict(booster, subset[1].X), subset[1], k, 0.0)
        out[family] = {
            "removed": names,
            **{
                f"{m}_change": round(metrics[m] - full[m], 4)
                for m in ("roc_auc", "average_precision", "card_precision_at_k")
            },
        }
    return out


def print_table(report: dict) -> None:
    k = report["k"]
    first = report["splits"][0]["split"]["train_start"][:10]
    print(
        f"\nfraud model quality, mean of {len(report['splits'])} standard splits (train 7 days, gap 7,"
        f" test 7; the first training week from {first}), {report['data']['transactions']:,}"
        " transactions"
    )
    print(f"{'model':<24}{'ROC AUC':>9}{'AP':>9}{f'CP@{k}':>9}{'fit s':>8}")
    for name, m in report["models"].items():
        print(
            f"{name:<24}{m['roc_auc']:>9.4f}{m['average_precision']:>9.4f}"
            f"{m['card_precision_at_k']:>9.4f}{m['fit_seconds']:>8.1f}"
        )
    for entry in report["splits"]:
        cells = "  ".join(
            f"{name} {m['average_precision']:.4f}/{m['card_precision_at_k']:.4f}"
            for name, m in entry["models"].items()
        )
        print(f"  train from {entry['split']['train_start'][:10]}, AP/CP@{k}: {cells}")
    for name, m in report["published_on_handbook_data"].items():
        print(f"{name + ' (published)':<24}{m['roc_auc']:>9.3f}{m['average_precision']:>9.3f}")
    most = max(report["null_share"], key=report["null_share"].get)
    print(f"most often null feature: {most} ({report['null_share'][most]:.1%} of the rows)")
    verdict = "beats" if report["lightgbm_beats_baselines"] else "does NOT beat"
    print(f"lightgbm {verdict} both baselines on AP and card precision@{k}")
    if "ablation" in report:
        print(f"\n{'without':<34}{'d AUC':>9}{'d AP':>9}{f'd CP@{k}':>9}")
        for family, row in report["ablation"].items():
            print(
                f"{family:<34}{row['roc_auc_change']:>+9.4f}{row['average_precision_change']:>+9.4f}"
                f"{row['card_precision_at_k_change']:>+9.4f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=84, help="37 days of history, then the splits")
    parser.add_argument("--splits", type=int, default=3, help="standard splits, a week apart")
    parser.add_argument("--tx-per-day", type=float, default=2.0, help="mean per card and day")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ablation", action="store_true", help="LightGBM without each family")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help=f"keep {RUN_DIR}")
    args = parser.parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
