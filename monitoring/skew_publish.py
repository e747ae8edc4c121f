"""Writes a skew report (monitoring/skew.py) as JSON and HTML and logs it to MLflow.

Files go to ``var/reports/skew_<mode>_<date>.{json,html}`` unless paths are given; a re-run for
the same day and mode replaces them. The MLflow run is in the experiment ``skew_report`` (artifacts
under the configured artifact root, like every experiment of models/registry.py): params date,
mode, requests, model version and threshold (one run per day and mode: a re-run replaces it);
metrics per feature (``match_rate.<feature>``), score
drift, decisions, quality and causes; the JSON and HTML as artifacts.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from monitoring import skew_gate
from skewless.tasks import realtime_task

EXPERIMENT = "skew_report"


def report_paths(cfg, mode: str, day: date | str) -> tuple[Path, Path]:
    """The default (json, html) paths of a day's report in one mode."""
    day = day.isoformat() if isinstance(day, date) else str(day)
    base = cfg.var_dir / "reports" / f"skew_{mode}_{day}"
    return base.with_suffix(".json"), base.with_suffix(".html")


def write_json(report: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return path


def write_html(report: dict, path: Path) -> Path:
    from monitoring import skew_html

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(skew_html.render(report), encoding="utf-8")
    return path


def metrics(report: dict) -> dict[str, float]:
    """The report's numbers as MLflow metrics (None values left out)."""
    out = {
        f"{measure}.{name}": s[measure]
        for measure in ("match_rate", "js_divergence", "psi")
        for name, s in report["features"].items()
    }
    out |= {f"score.{k}": v for k, v in report["score"].items()}
    out |= {f"decisions.{k}": v for k, v in report["decisions"].items()}
    out |= {f"quality.{k}": v for k, v in report["quality"].items()}
    out |= {f"causes.{k}": v for k, v in report["causes"].items()}
    out["requests"] = report["requests"]
    n = skew_gate.counts(report.get("anomalies", []))
    out["anomalies"], out["anomalies.gating"] = n["anomalies"], n["gating"]
    return {k: float(v) for k, v in out.items() if v is not None}


def log_to_mlflow(report: dict, artifacts: list[Path], cfg) -> str:
    """One run in the experiment ``skew_report`` per day and mode: an earlier run of the same day
    and mode is deleted (a re-run replaces it, like the files). Returns the run id."""
    from models import registry

    mlflow, client = registry.connect(cfg)
    day, mode = report.get("date", ""), report["mode"]
    experiment_id = registry.experiment(mlflow, cfg, EXPERIMENT)
    earlier = client.search_runs(
        [experiment_id], filter_string=f"tags.date = '{day}' and tags.mode = '{mode}'"
    )
    for run in earlier:
        client.delete_run(run.info.run_id)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"skew-{mode}-{day}",
        tags={"task": realtime_task().name, "mode": mode, "date": day},
    ) as run:
        mlflow.log_params(
            {
                "date": day,
                "mode": mode,
                "requests": report["requests"],
                "model_version": ",".join(report.get("model_versions", [])) or "-",
                "threshold": report.get("threshold"),
            }
        )
        mlflow.log_metrics(metrics(report))
        for path in artifacts:
            mlflow.log_artifact(str(path))
    return run.info.run_id


def publish(
    report: dict,
    cfg=None,
    *,
    json_path: Path | None = None,
    html_path: Path | None = None,
    mlflow: bool = True,
) -> dict:
    """Writes the JSON and the HTML (default paths: report_paths) and, with ``mlflow``, logs
    both in a run. Returns ``{"json", "html", "run_id"}``."""
    from skewless import settings

    cfg = cfg or settings.load()
    default_json, default_html = report_paths(cfg, report["mode"], report.get("date", "all"))
    written = [
        write_json(report, json_path or default_json),
        write_html(report, html_path or default_html),
    ]
    run_id = log_to_mlflow(report, written, cfg) if mlflow else None
    return {"json": str(written[0]), "html": str(written[1]), "run_id": run_id}


def report_day(day: date, mode: str, cfg=None, *, mlflow: bool = True) -> dict:
    """The report of one day and mode, written and logged (the skew_report DAG's task).
    Returns a summary: day, mode, requests, the headline numbers and where it went."""
    from monitoring import skew
    from skewless import settings

    cfg = cfg or settings.load()
    report = skew.skew_report(day, mode=mode, cfg=cfg)
    return {
        "date": report["date"],
        "mode": report["mode"],
        "requests": report["requests"],
        "decisions": report["decisions"],
        "quality": report["quality"],
        "anomalies": report["anomalies"],
        **publish(report, cfg, mlflow=mlflow),
    }
