"""Trains a task's LightGBM model on a time-based split, logs it to MLflow, promotes by alias.

Split: train | gap | test on event time (end exclusive). The gap is the label delay for fraud (labels
of the last training days would not be known yet at deployment) and the 30-day horizon for churn
(a row's label looks 30 days ahead). Defaults: test = the last 7 days with known labels, train =
everything before the gap. The alias ``champion`` moves to the new version only when it beats the
current champion on the same holdout by the committed ``promotion.min_improvement``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from models import datasets, evaluation
from models.config import model_config, registry
from skewless import settings as settings_module

TEST_DAYS = timedelta(days=7)
CHAMPION = "champion"


@dataclass(frozen=True)
class Windows:
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    gap: timedelta  # the default gap for the task (label delay / churn horizon)

    def as_dict(self) -> dict[str, str]:
        return {
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
            "gap_days": round((self.test_start - self.train_end).total_seconds() / 86400, 4),
        }


def _midnight_after(value: datetime) -> datetime:
    return datetime.combine(value.date(), datetime.min.time()) + timedelta(days=1)


def default_gap(task: datasets.Task, cfg) -> timedelta:
    return cfg.label_delay if task.name == "fraud" else datasets.CHURN_HORIZON


def resolve_windows(
    task: str,
    *,
    train_start: datetime | None = None,
    train_end: datetime | None = None,
    test_start: datetime | None = None,
    test_end: datetime | None = None,
    as_of: datetime | None = None,
    cfg=None,
) -> Windows:
    """Fills the windows that are not given and validates all four (ValueError names the argument)."""
    from skewless import warehouse

    spec = datasets.get_task(task)
    cfg = cfg or settings_module.load()
    gap = default_gap(spec, cfg)
    if None in (train_start, test_start, test_end):
        known, params = datasets.as_of_predicate(spec, as_of)
        con = warehouse.connect(cfg.warehouse_path, read_only=True)
        try:
            first, last = con.execute(
                f"select min(event_timestamp), max(event_timestamp) from {spec.training_set} "
                f"where {spec.label} is not null and {known}",
                params,
            ).fetchone()
        finally:
            con.close()
        if first is None:
            when = f" known at as_of={as_of}" if as_of else ""
            raise ValueError(
                f"{spec.training_set} holds no labeled rows{when}: import data and run `skewless build`"
            )
        if test_end is None:
            test_end = _midnight_after(last)
            if spec.name == "fraud" and as_of is not None:
                # every label of the test window must be known at as_of
                test_end = min(test_end, as_of - cfg.label_delay)
        if train_start is None:
            train_start = datetime.combine(first.date(), datetime.min.time())
    if test_start is None:
        test_start = test_end - TEST_DAYS
    defaulted_train_end = train_end is None
    if train_end is None:
        train_end = test_start - gap
        if train_start >= train_end:
            raise ValueError(
                f"train_start={train_start} must be before train_end={train_end}: the data is too "
                f"short for the default split (test [{test_start}, {test_end}) after a gap of "
                f"{gap}); pass --train-end / train_end (and a shorter gap) explicitly"
            )
    for name, start, end in (
        ("train_start", train_start, train_end),
        ("test_start", test_start, test_end),
    ):
        if start >= end:
            other = name.replace("start", "end")
            raise ValueError(f"{name}={start} must be before {other}={end} (end is exclusive)")
    if train_end > test_start:
        raise ValueError(
            f"train_end={train_end} must not be after test_start={test_start}: "
            "the train window must end before the test window starts"
        )
    if as_of is not None and test_end > as_of:
        raise ValueError(f"test_end={test_end} must not be after as_of={as_of}")
    if test_start - train_end < gap and not defaulted_train_end:
        warnings.warn(
            f"the gap between train_end and test_start ({test_start - train_end}) is shorter than "
            f"the {spec.name} default ({gap}): test labels may leak into training",
            stacklevel=2,
        )
    return Windows(train_start, train_end, test_start, test_end, gap)


def _check_frame(frame: datasets.TrainingFrame, which: str, start, end) -> None:
    if len(frame) == 0:
        raise ValueError(
            f"the {which} window [{start}, {end}) holds no labeled rows "
            f"({which}_start/{which}_end): pick a window inside the data"
        )
    if frame.y.nunique() < 2:
        raise ValueError(
            f"the {which} window [{start}, {end}) holds only label {int(frame.y.iloc[0])} "
            f"({len(frame)} rows; {which}_start/{which}_end): widen it so both classes occur"
        )


def lightgbm_params(task_config: dict) -> tuple[dict, int]:
    params = dict(task_config["lightgbm"])
    rounds = int(params.pop("num_boost_round"))
    params.setdefault("objective", "binary")
    params.setdefault("verbosity", -1)
    params.setdefault("num_threads", 2)
    params.setdefault("deterministic", True)
    params.setdefault("force_row_wise", True)
    return params, rounds


def fit(frame: datasets.TrainingFrame, task_config: dict):
    import lightgbm as lgb

    params, rounds = lightgbm_params(task_config)
    data = lgb.Dataset(
        datasets.to_matrix(frame.X, frame.X.columns),
        label=frame.y.to_numpy(),
        feature_name=list(frame.X.columns),
        free_raw_data=True,
    )
    return lgb.train(params, data, num_boost_round=rounds)


def predict(booster, X) -> Any:
    """Scores with the Booster on a NumPy matrix in the model's own feature order."""
    names = booster.feature_name()
    missing = [n for n in names if n not in X.columns]
    if missing:
        raise KeyError(f"the model needs features the data lacks: {missing}")
    return booster.predict(datasets.to_matrix(X, names), num_threads=2)


def _pip_requirements() -> list[str]:
    # Listing them skips MLflow's requirement inference (a subprocess that reloads the model, ~20 s).
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}" for name in ("mlflow", "lightgbm", "numpy", "pandas", "scipy")
    ]


def _champion(client, model_name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:  # no registered model yet, or no alias
        return None


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
    """Trains, evaluates on the holdout, logs to MLflow and (if ``register``) registers and promotes."""
    started = time.perf_counter()
    spec = datasets.get_task(task)
    cfg = cfg or settings_module.load()
    task_config = model_config(cfg, spec.name)
    source = source or datasets.DEFAULT_SOURCE
    windows = resolve_windows(
        spec.name,
        train_start=train_start,
        train_end=train_end,
        test_start=test_start,
        test_end=test_end,
        as_of=as_of,
        cfg=cfg,
    )
    both = datasets.load_windows(
        spec.name,
        [(windows.train_start, windows.train_end), (windows.test_start, windows.test_end)],
        cfg=cfg,
        as_of=as_of,
        source=source,
    )
    train_frame = both.subset(windows.train_start, windows.train_end)
    test_frame = both.subset(windows.test_start, windows.test_end)
    _check_frame(train_frame, "train", windows.train_start, windows.train_end)
    _check_frame(test_frame, "test", windows.test_start, windows.test_end)
    load_seconds = both.seconds

    fit_started = time.perf_counter()
    booster = fit(train_frame, task_config)
    fit_seconds = time.perf_counter() - fit_started
    scores = predict(booster, test_frame.X)
    metrics = evaluation.metrics(
        test_frame.y.to_numpy(),
        scores,
        test_frame.keys["event_timestamp"],
        threshold=float(task_config["alert_threshold"]),
        k=int(task_config["top_k_per_day"]),
    )
    fingerprints = {"train": train_frame.fingerprint(), "test": test_frame.fingerprint()}
    fingerprint = hashlib.sha256(f"{fingerprints['train']}:{fingerprints['test']}".encode())
    data_fingerprint = fingerprint.hexdigest()

    mlflow, client = registry(cfg)
    model_name = task_config["registered_model"]
    promotion = task_config["promotion"]
    metric_name = promotion["metric"]
    min_improvement = float(promotion.get("min_improvement", 0.0))
    experiment_id = _experiment(mlflow, cfg, spec.name)
    result: dict[str, Any] = {"task": spec.name, "model_name": model_name}
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{spec.name}-{windows.test_end:%Y%m%d}",
        tags={"task": spec.name, "feature_service": spec.service.name, "source": source},
    ) as run:
        params, rounds = lightgbm_params(task_config)
        mlflow.log_params({f"lgb_{k}": v for k, v in params.items()})
        mlflow.log_params(
            {
                "task": spec.name,
                "num_boost_round": rounds,
                "feature_service": spec.service.name,
                "n_features": train_frame.X.shape[1],
                "source": source,
                "alert_threshold": task_config["alert_threshold"],
                "top_k_per_day": task_config["top_k_per_day"],
                "promotion_metric": metric_name,
                "promotion_min_improvement": min_improvement,
                "as_of": as_of.isoformat() if as_of else "",
                "train_rows": len(train_frame),
                "test_rows": len(test_frame),
                "data_fingerprint": data_fingerprint,
                "train_fingerprint": fingerprints["train"],
                "test_fingerprint": fingerprints["test"],
                **windows.as_dict(),
            }
        )
        mlflow.set_tag("data_fingerprint", data_fingerprint)
        mlflow.log_dict(
            {
                "feature_service": spec.service.name,
                "features": list(train_frame.X.columns),
                "request_features": [
                    c for c in train_frame.X.columns if c not in spec.group_features
                ],
            },
            "features.json",
        )
        mlflow.log_dict(
            {
                **windows.as_dict(),
                "as_of": as_of.isoformat() if as_of else None,
                "training_set": spec.training_set,
                "train_rows": len(train_frame),
                "test_rows": len(test_frame),
                "train_positives": int(train_frame.y.sum()),
                "test_positives": int(test_frame.y.sum()),
                "fingerprints": {**fingerprints, "data": data_fingerprint},
            },
            "data_window.json",
        )
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        mlflow.log_metrics({"load_seconds": load_seconds, "fit_seconds": round(fit_seconds, 3)})
        per_day = evaluation.precision_at_k_by_day(
            test_frame.y.to_numpy(),
            scores,
            test_frame.keys["event_timestamp"],
            int(task_config["top_k_per_day"]),
        )
        mlflow.log_dict(per_day, "precision_at_k_by_day.json")
        for name, figure in evaluation.figures(booster, test_frame.y.to_numpy(), scores).items():
            mlflow.log_figure(figure, f"plots/{name}.png")

        from mlflow.models import infer_signature

        example = train_frame.X.head(5)
        signature = infer_signature(test_frame.X.head(100), scores[:100])
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=model_name if register else None,
            pip_requirements=_pip_requirements(),
        )
        version = str(info.registered_model_version) if register else None
        decision = _promote(
            client,
            mlflow,
            model_name,
            version,
            test_frame,
            metrics[metric_name],
            metric_name,
            min_improvement,
            task_config,
        )
        mlflow.set_tags({f"promotion.{k}": str(v) for k, v in decision.items()})
        if decision["champion_score"] is not None:
            mlflow.log_metric(f"champion_{metric_name}", decision["champion_score"])
        mlflow.log_metric(f"challenger_{metric_name}", metrics[metric_name])
        mlflow.log_metric("promoted", int(decision["promoted"]))
        if version is not None:
            for key, value in {
                "feature_service": spec.service.name,
                "data_fingerprint": data_fingerprint,
                "test_window": f"{windows.test_start.isoformat()}/{windows.test_end.isoformat()}",
                metric_name: f"{metrics[metric_name]:.6f}",
            }.items():
                client.set_model_version_tag(model_name, version, key, value)
        result.update(
            run_id=run.info.run_id,
            model_version=version,
            promoted=decision["promoted"],
            champion_version=decision["champion_version"],
            previous_champion_version=decision["previous_champion_version"],
            promotion=decision,
        )
    result.update(
        metrics=metrics,
        train_rows=len(train_frame),
        test_rows=len(test_frame),
        windows=windows.as_dict(),
        as_of=as_of.isoformat() if as_of else None,
        feature_service=spec.service.name,
        features=list(train_frame.X.columns),
        source=source,
        data_fingerprint=data_fingerprint,
        seconds={
            "load": load_seconds,
            "fit": round(fit_seconds, 3),
            "total": round(time.perf_counter() - started, 3),
        },
    )
    return result


def _promote(
    client,
    mlflow,
    model_name: str,
    version: str | None,
    test_frame: datasets.TrainingFrame,
    challenger_score: float,
    metric_name: str,
    min_improvement: float,
    task_config: dict,
) -> dict:
    """Scores the current champion on the same holdout; moves the alias if the challenger wins."""
    current = _champion(client, model_name)
    decision: dict[str, Any] = {
        "metric": metric_name,
        "min_improvement": min_improvement,
        "challenger_version": version,
        "challenger_score": challenger_score,
        "previous_champion_version": str(current.version) if current else None,
        "champion_score": None,
    }
    if current is None:
        promoted = version is not None
        reason = "first registered model" if promoted else "not registered"
    else:
        champion = mlflow.lightgbm.load_model(f"models:/{model_name}/{current.version}")
        try:
            champion_scores = predict(champion, test_frame.X)
        except KeyError as exc:  # a champion on another feature set cannot be compared
            champion_scores, reason = None, f"champion not comparable on this holdout: {exc}"
        if champion_scores is not None:
            champion_metrics = evaluation.metrics(
                test_frame.y.to_numpy(),
                champion_scores,
                test_frame.keys["event_timestamp"],
                threshold=float(task_config["alert_threshold"]),
                k=int(task_config["top_k_per_day"]),
            )
            decision["champion_score"] = champion_metrics[metric_name]
            beats = challenger_score > champion_metrics[metric_name] + min_improvement
            promoted = beats and version is not None
            reason = (
                f"challenger {metric_name} {challenger_score:.6f} "
                f"{'beats' if beats else 'does not beat'} champion "
                f"{champion_metrics[metric_name]:.6f} + {min_improvement}"
            )
            if beats and version is None:
                reason += " (not registered)"
        else:
            promoted = False
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    decision.update(
        promoted=promoted,
        reason=reason,
        champion_version=version if promoted else (str(current.version) if current else None),
    )
    return decision


def _experiment(mlflow, cfg, name: str) -> str:
    """The task's experiment, created with its artifacts under the configured artifact root."""
    from mlflow.exceptions import MlflowException

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = cfg.mlflow_artifact_root / name
    location.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow.create_experiment(name, artifact_location=location.as_uri())
    except MlflowException:  # created concurrently
        return mlflow.get_experiment_by_name(name).experiment_id


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date, expected e.g. 2025-03-01"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``skewless train`` (also used by ``python -m models.training``)."""
    parser.add_argument("task", choices=sorted(datasets.TASKS) + sorted(datasets.ALIASES))
    for name in ("train-start", "train-end", "test-start", "test-end"):
        parser.add_argument(f"--{name}", type=_timestamp, help="UTC date/time, end exclusive")
    parser.add_argument("--as-of", type=_timestamp, help="use only labels known at this time")
    parser.add_argument("--source", choices=datasets.SOURCES, help="where features come from")
    parser.add_argument("--no-register", action="store_true", help="log the run only")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        # MLflow and Feast may print progress; stdout carries only the result.
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
        # the metrics at the top level (roc_auc, average_precision, …) and the full result
        print(json.dumps({**result["metrics"], **result}, indent=2, default=str))
    else:
        m = result["metrics"]
        print(
            f"{result['model_name']} v{result['model_version']}: roc_auc={m['roc_auc']:.4f} "
            f"average_precision={m['average_precision']:.4f} "
            f"precision@{m['k']}/day={m['precision_at_k_per_day']:.4f} "
            f"recall@{m['threshold']}={m['recall_at_threshold']:.4f} "
            f"train={result['train_rows']} test={result['test_rows']} "
            f"promoted={result['promoted']} champion=v{result['champion_version']}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.training", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
