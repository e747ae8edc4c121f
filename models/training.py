"""Trains a task's LightGBM model on a time-based split, logs it to MLflow, promotes by alias.

The split is models/splits.py (train | gap | test, the gap = label delay / churn horizon). The run
logs params, metrics, the feature service and feature list, the data window and a data fingerprint,
PR/ROC/feature-importance plots and the model (registered as the feature service's model name).
The alias ``champion`` moves to the new version only when it beats the current champion, scored
on the same holdout, by the committed ``promotion.min_improvement``; the first version always
becomes champion. ``skewless train fraud --json`` runs it from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models import datasets, evaluation, registry, splits
from models.config import model_config
from skewless import settings as settings_module
from skewless import tasks


def lightgbm_params(task_config: dict) -> tuple[dict, int]:
    """LightGBM parameters from the config (plus quiet, deterministic defaults) and the rounds."""
    params = dict(task_config["lightgbm"])
    rounds = int(params.pop("num_boost_round"))
    params.setdefault("objective", "binary")
    params.setdefault("verbosity", -1)
    params.setdefault("num_threads", 1)
    params.setdefault("deterministic", True)
    params.setdefault("force_row_wise", True)
    return params, rounds


def fit(frame: datasets.TrainingFrame, task_config: dict):
    """A LightGBM Booster trained on the frame (lightgbm.train, fixed rounds, seeded)."""
    import lightgbm as lgb

    params, rounds = lightgbm_params(task_config)
    data = lgb.Dataset(
        datasets.to_matrix(frame.X, frame.X.columns),
        label=frame.y.to_numpy(),
        feature_name=list(frame.X.columns),
    )
    return lgb.train(params, data, num_boost_round=rounds)


def _evaluate(booster, frame: datasets.TrainingFrame, task_config: dict) -> tuple[dict, Any]:
    """Holdout metrics at the alert threshold the committed rule derives from these scores."""
    scores = datasets.predict(booster, frame.X)
    timestamps = frame.keys["event_timestamp"]
    threshold, rule = evaluation.derive_threshold(task_config, scores, timestamps)
    metrics = evaluation.metrics(
        frame.y.to_numpy(),
        scores,
        timestamps,
        threshold=threshold,
        k=int(task_config["top_k_per_day"]),
        cards=frame.keys[tasks.get_task(frame.task).card],
    )
    return {**metrics, "threshold_rule": rule}, scores


@dataclass(frozen=True)
class _Job:
    """What one training run works on: the task, its config, the feature source and windows."""

    spec: tasks.Task
    cfg: Any
    task_config: dict
    source: str
    as_of: datetime | None
    windows: splits.Windows


@dataclass(frozen=True)
class _Fitted:
    """The frames, the model and its holdout evaluation."""

    train: datasets.TrainingFrame
    test: datasets.TrainingFrame
    booster: Any
    metrics: dict
    scores: Any
    window: dict  # the data window and fingerprints (data_window.json)
    seconds: dict[str, float]  # load and fit


def train(
    task: str,
    *,
    train_start: datetime | None = None,
    train_end: datetime | None = None,
    test_start: datetime | None = None,
    test_end: datetime | None = None,
    as_of: datetime | None = None,
    cfg=None,
    register: bool = True,
    source: str | None = None,
) -> dict:
    """Trains, evaluates on the holdout, logs to MLflow, and (``register``) registers + promotes.

    Windows left None take the defaults of models/splits.py; ``as_of`` uses only what was known
    then; ``source`` (default datasets.DEFAULT_SOURCE) picks where the features come from.
    """
    started = time.perf_counter()
    job = _job(task, (train_start, train_end, test_start, test_end), as_of, cfg, source)
    fitted = _fit_and_evaluate(job)
    spec, windows = job.spec, job.windows
    mlflow, client = registry.connect(job.cfg)
    model_name = job.task_config["registered_model"]
    with mlflow.start_run(
        experiment_id=registry.experiment(mlflow, job.cfg, spec.name),
        run_name=f"{spec.name}-{windows.test_end:%Y%m%d}",
        tags={"task": spec.name, "feature_service": spec.service.name, "source": job.source},
    ) as run:
        _log_inputs(mlflow, job, fitted)
        _log_evaluation(mlflow, job, fitted)
        version = _log_model(mlflow, fitted, model_name, register)
        decision = _promotion(
            mlflow, client, model_name, version, fitted.test, fitted.metrics, job.task_config
        )
        _log_decision(mlflow, client, job, fitted, model_name, version, decision)
    return _result(job, fitted, run.info.run_id, model_name, version, decision, started)


def _job(task: str, windows: tuple, as_of: datetime | None, cfg, source: str | None) -> _Job:
    """The task, its config, the feature source and the resolved windows (``windows``: train_start,
    train_end, test_start, test_end, None for the defaults)."""
    spec = tasks.get_task(task)
    cfg = cfg or settings_module.load()
    task_config = model_config(cfg, spec.name)
    source = source or datasets.DEFAULT_SOURCE
    as_of = datasets.naive_utc(as_of)
    train_start, train_end, test_start, test_end = windows
    resolved = splits.resolve_windows(
        spec.name,
        train_start=train_start,
        train_end=train_end,
        test_start=test_start,
        test_end=test_end,
        as_of=as_of,
        cfg=cfg,
    )
    return _Job(spec, cfg, task_config, source, as_of, resolved)


def _load(job: _Job) -> tuple[datasets.TrainingFrame, datasets.TrainingFrame, float]:
    """The checked train and test frames and the seconds it took to load them."""
    windows = job.windows
    # one retrieval for both windows; rows inside the gap are never loaded
    both = datasets.load_windows(
        job.spec.name,
        [(windows.train_start, windows.train_end), (windows.test_start, windows.test_end)],
        cfg=job.cfg,
        as_of=job.as_of,
        source=job.source,
    )
    train_frame = both.subset(windows.train_start, windows.train_end)
    test_frame = both.subset(windows.test_start, windows.test_end)
    splits.check_frame(train_frame, "train", windows.train_start, windows.train_end)
    splits.check_frame(test_frame, "test", windows.test_start, windows.test_end)
    return train_frame, test_frame, both.seconds


def _fit_and_evaluate(job: _Job) -> _Fitted:
    """Loads the frames, fits on train and evaluates on test (metrics at the derived threshold)."""
    train_frame, test_frame, load_seconds = _load(job)
    fit_started = time.perf_counter()
    booster = fit(train_frame, job.task_config)
    fit_seconds = round(time.perf_counter() - fit_started, 3)
    metrics, scores = _evaluate(booster, test_frame, job.task_config)
    window = _data_window(job, train_frame, test_frame)
    seconds = {"load": load_seconds, "fit": fit_seconds}
    return _Fitted(train_frame, test_frame, booster, metrics, scores, window, seconds)


def _data_window(job: _Job, train_frame, test_frame) -> dict:
    """The windows, row and positive counts and the data fingerprints (data_window.json)."""
    fingerprints = {"train": train_frame.fingerprint(), "test": test_frame.fingerprint()}
    data_fingerprint = hashlib.sha256(
        f"{fingerprints['train']}:{fingerprints['test']}".encode()
    ).hexdigest()
    return {
        **job.windows.as_dict(),
        "as_of": job.as_of.isoformat() if job.as_of else None,
        "training_set": job.spec.training_set,
        "train_rows": len(train_frame),
        "test_rows": len(test_frame),
        "train_positives": int(train_frame.y.sum()),
        "test_positives": int(test_frame.y.sum()),
        "fingerprints": {**fingerprints, "data": data_fingerprint},
    }


def _log_inputs(mlflow, job: _Job, fitted: _Fitted) -> None:
    """Params, the feature list and the data window of the run."""
    spec, task_config, window = job.spec, job.task_config, fitted.window
    data_fingerprint = window["fingerprints"]["data"]
    params, rounds = lightgbm_params(task_config)
    mlflow.log_params({f"lgb_{k}": v for k, v in params.items()})
    mlflow.log_params(
        {
            "task": spec.name,
            "num_boost_round": rounds,
            "feature_service": spec.service.name,
            "n_features": fitted.train.X.shape[1],
            "source": job.source,
            "training_set": spec.training_set,
            "alert_threshold_rule": json.dumps(task_config["alert_threshold"]),
            "top_k_per_day": task_config["top_k_per_day"],
            "promotion_metric": task_config["promotion"]["metric"],
            "promotion_min_improvement": task_config["promotion"].get("min_improvement", 0.0),
            "as_of": window["as_of"] or "",
            "train_rows": window["train_rows"],
            "test_rows": window["test_rows"],
            "data_fingerprint": data_fingerprint,
            "train_fingerprint": window["fingerprints"]["train"],
            "test_fingerprint": window["fingerprints"]["test"],
            **{k: window[k] for k in ("train_start", "train_end", "test_start", "test_end")},
            "gap_days": window["gap_days"],
        }
    )
    mlflow.set_tag("data_fingerprint", data_fingerprint)
    features = list(fitted.train.X.columns)
    mlflow.log_dict(
        {
            "feature_service": spec.service.name,
            "features": features,
            "request_features": [c for c in features if c not in spec.group_features],
        },
        "features.json",
    )
    mlflow.log_dict(window, "data_window.json")


def _log_evaluation(mlflow, job: _Job, fitted: _Fitted) -> None:
    """The holdout metrics, the threshold rule, the timings, precision@k per day and the plots."""
    metrics, test_frame = fitted.metrics, fitted.test
    mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
    mlflow.set_tag("threshold_rule", metrics["threshold_rule"])
    mlflow.log_metrics(
        {"load_seconds": fitted.seconds["load"], "fit_seconds": fitted.seconds["fit"]}
    )
    per_day = evaluation.precision_at_k_by_day(
        test_frame.y.to_numpy(),
        fitted.scores,
        test_frame.keys["event_timestamp"],
        int(job.task_config["top_k_per_day"]),
    )
    mlflow.log_dict(per_day, "precision_at_k_by_day.json")
    figures = evaluation.figures(fitted.booster, test_frame.y.to_numpy(), fitted.scores)
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}.png")


def _log_model(mlflow, fitted: _Fitted, model_name: str, register: bool) -> str | None:
    """Logs the model (registered as ``model_name`` when ``register``); the new version or None."""
    from mlflow.models import infer_signature

    info = mlflow.lightgbm.log_model(
        fitted.booster,
        name="model",
        signature=infer_signature(fitted.test.X.head(100), fitted.scores[:100]),
        input_example=fitted.train.X.head(5),
        registered_model_name=model_name if register else None,
        pip_requirements=registry.pip_requirements(),
    )
    return str(info.registered_model_version) if register else None


def _promotion(mlflow, client, model_name, version, test_frame, metrics, task_config) -> dict:
    """Scores the current champion on the same holdout and moves the alias if the challenger wins."""
    metric = task_config["promotion"]["metric"]
    min_improvement = float(task_config["promotion"].get("min_improvement", 0.0))
    if metric not in metrics:
        raise ValueError(f"promotion.metric={metric!r}: expected one of {sorted(metrics)}")
    previous = registry.champion_version(client, model_name)
    champion_score = None
    if previous is None:
        beats, reason = registry.decide(metrics[metric], None, min_improvement)
    else:
        champion = registry.load_version(mlflow, model_name, previous)
        try:
            champion_metrics, _ = _evaluate(champion, test_frame, task_config)
        except KeyError as exc:  # a champion on other features cannot be scored on this holdout
            beats, reason = False, f"champion v{previous} not comparable on this holdout: {exc}"
        else:
            champion_score = champion_metrics[metric]
            beats, reason = registry.decide(metrics[metric], champion_score, min_improvement)
    promoted = beats and version is not None
    if beats and version is None:
        reason += " (not registered)"
    if promoted:
        registry.promote(client, model_name, version)
    return {
        "metric": metric,
        "min_improvement": min_improvement,
        "challenger_version": version,
        "challenger_score": metrics[metric],
        "previous_champion_version": previous,
        "champion_score": champion_score,
        "promoted": promoted,
        "reason": reason,
        "champion_version": version if promoted else previous,
    }


def _log_decision(mlflow, client, job: _Job, fitted: _Fitted, model_name, version, decision):
    """The promotion decision on the run, and the registered version's tags."""
    metrics, windows = fitted.metrics, job.windows
    mlflow.set_tags(registry.describe(decision))
    mlflow.log_metric(f"challenger_{decision['metric']}", decision["challenger_score"])
    if decision["champion_score"] is not None:
        mlflow.log_metric(f"champion_{decision['metric']}", decision["champion_score"])
    mlflow.log_metric("promoted", int(decision["promoted"]))
    if version is None:
        return
    tags = {
        "feature_service": job.spec.service.name,
        "data_fingerprint": fitted.window["fingerprints"]["data"],
        "test_window": f"{windows.test_start.isoformat()}/{windows.test_end.isoformat()}",
        registry.THRESHOLD_TAG: repr(metrics["threshold"]),
        "threshold_rule": metrics["threshold_rule"],
        decision["metric"]: f"{decision['challenger_score']:.6f}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)


def _result(job: _Job, fitted: _Fitted, run_id, model_name, version, decision, started) -> dict:
    """What ``train`` returns (``started``: its perf_counter start, for the total seconds)."""
    metrics = fitted.metrics
    return {
        "task": job.spec.name,
        "run_id": run_id,
        "model_name": model_name,
        "model_version": version,
        "promoted": decision["promoted"],
        "champion_version": decision["champion_version"],
        "previous_champion_version": decision["previous_champion_version"],
        "promotion": decision,
        "alert_threshold": metrics["threshold"],
        "metrics": metrics,
        "train_rows": len(fitted.train),
        "test_rows": len(fitted.test),
        "windows": job.windows.as_dict(),
        "as_of": job.as_of.isoformat() if job.as_of else None,
        "feature_service": job.spec.service.name,
        "features": list(fitted.train.X.columns),
        "source": job.source,
        "data_fingerprint": fitted.window["fingerprints"]["data"],
        "seconds": {
            "load": fitted.seconds["load"],
            "fit": fitted.seconds["fit"],
            "total": round(time.perf_counter() - started, 3),
        },
    }


def run(args: argparse.Namespace) -> int:
    """Runs ``train`` from the parsed arguments of ``skewless train``."""
    try:
        # MLflow and Feast may print progress: stdout carries only the result
        with contextlib.redirect_stdout(sys.stderr):
            result = train(
                args.task,
                train_start=args.train_start,
                train_end=args.train_end,
                test_start=args.test_start,
                test_end=args.test_end,
                as_of=args.as_of,
                register=not args.no_register,
                source=args.source,
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        # the metrics at the top level (roc_auc, average_precision, …), then the whole result
        print(json.dumps({**result["metrics"], **result}, indent=2, default=str))
    else:
        m = result["metrics"]
        print(
            f"{result['model_name']} "
            f"{'v' + result['model_version'] if result['model_version'] else '(not registered)'}: "
            f"roc_auc={m['roc_auc']:.4f} "
            f"average_precision={m['average_precision']:.4f} "
            f"card_precision@{m['k']}={m['card_precision_at_k']:.4f} "
            f"recall@{m['threshold']:.4g}={m['recall_at_threshold']:.4f} "
            f"train={result['train_rows']} test={result['test_rows']} "
            f"promoted={result['promoted']} champion=v{result['champion_version']}"
        )
    return 0
