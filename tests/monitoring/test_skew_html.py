"""The skew report's HTML page (monitoring/skew_html.py) and its publication: files and an MLflow run
(monitoring/skew_publish.py), on the planted report of test_skew.py and a real SQLite MLflow store
under tmp_path."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from monitoring import skew, skew_html, skew_publish
from tests.monitoring import test_skew

# fixtures shared with test_skew.py
env = test_skew.env
day_truth = test_skew.day_truth
planted = test_skew.planted

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Page(HTMLParser):
    """Checks that tags nest and close, and collects per-section images, tables and text."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: dict[str, dict] = {}
        self.section: str | None = None
        self.title = ""
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
            self.sections[self.section] = {"img": 0, "table": 0, "src": []}
        if self.section and tag in ("img", "table"):
            self.sections[self.section][tag] += 1
        if tag == "img":
            self.sections[self.section]["src"].append(attrs["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "title":
            self.title += data
        self.text.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    return parser


@pytest.fixture
def report(planted):
    cfg = planted[0]
    return cfg, skew.skew_report(cfg=cfg)


def test_the_page_has_every_section_with_tables_and_plots(report):
    _, report = report
    page = skew_html.render(report)
    assert page.startswith("<!DOCTYPE html>")
    parsed = parse(page)
    assert parsed.title == f"skewless skew report: exact mode, {report['date']}"
    sections = parsed.sections
    expected = ["summary", "quality", "decisions", "causes", "lags", "features", "score"]
    expected.append("examples")
    assert list(sections) == expected
    assert all(sections[s]["table"] >= 1 for s in expected)
    for name in ("quality", "decisions", "causes", "features", "score"):
        assert sections[name]["img"] >= 1, name
    assert sections["features"]["img"] == skew_html.PLOTTED_FEATURES
    assert sections["score"]["img"] == 2
    assert sections["examples"]["table"] == 3
    srcs = [src for s in sections.values() for src in s["src"]]
    assert all(src.startswith("data:image/png;base64,") for src in srcs)  # nothing fetched
    assert "http://" not in page and "https://" not in page and "<script" not in page

    text = " ".join(parsed.text)
    for heading in ("features at training time", "features at serving time", "prediction impact"):
        assert heading in text
    assert "missed fraud" in text and "false alert" in text
    for name in report["features"]:
        assert name in text
    missed = report["examples"]["impact"][0]
    assert missed["transaction_id"] in text and f"{missed['offline_score']:.4g}" in text


def test_values_are_escaped(report):
    _, report = report
    report = {**report, "mode": "<script>alert(1)</script>"}
    report["examples"] = json.loads(json.dumps(report["examples"]))
    report["examples"]["impact"][0]["consequence"] = "a < b & c"
    page = skew_html.render(report)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &lt; b &amp; c" in page
    parse(page)


def test_publish_writes_both_files_and_logs_an_mlflow_run(report):
    from mlflow import MlflowClient

    cfg, report = report
    assert cfg.mlflow_tracking_uri.startswith("sqlite:///")
    out = skew_publish.publish(report, cfg)
    json_path, html_path = skew_publish.report_paths(cfg, "exact", report["date"])
    assert (out["json"], out["html"]) == (str(json_path), str(html_path))
    assert json_path.parent == cfg.var_dir / "reports"
    assert json.loads(json_path.read_text()) == report
    parse(html_path.read_text())

    client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
    run = client.get_run(out["run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "skew_report"
    assert run.data.params["date"] == report["date"]
    assert run.data.params["mode"] == "exact"
    assert run.data.params["requests"] == str(report["requests"])
    assert run.data.params["model_version"] == ",".join(report["model_versions"])
    metrics = run.data.metrics
    assert metrics["decisions.flipped"] == 2
    assert metrics["decisions.missed_frauds"] == 1
    assert metrics["decisions.false_alerts"] == 1
    assert metrics["score.mean_abs_drift"] == pytest.approx(report["score"]["mean_abs_drift"])
    found = report["anomalies"]
    assert metrics["anomalies"] == len(found) and metrics["anomalies.gating"] == sum(
        a["gate"] for a in found
    )
    for key in ("served_average_precision", "offline_average_precision"):
        assert metrics[f"quality.{key}"] == pytest.approx(report["quality"][key])
    for key in ("served_recall", "offline_recall"):
        assert metrics[f"quality.{key}"] == pytest.approx(report["quality"][key])
    for name, stats in report["features"].items():
        for measure in ("match_rate", "js_divergence", "psi"):  # what /metrics exports too
            if stats[measure] is not None:
                assert metrics[f"{measure}.{name}"] == pytest.approx(stats[measure])
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert artifacts == {json_path.name, html_path.name}
    local = client.download_artifacts(out["run_id"], html_path.name)
    assert Path(local).read_text() == html_path.read_text()

    again = skew_publish.publish(report, cfg)  # a re-run for the day and mode replaces the run
    active = client.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in active] == [again["run_id"]]
    assert client.get_run(out["run_id"]).info.lifecycle_stage == "deleted"


def test_cli_writes_html_and_logs_to_mlflow(planted, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from skewless import cli

    cfg = planted[0]
    monkeypatch.setenv("SKEWLESS_MODEL_CONFIG", str(cfg.model_config))
    page = tmp_path / "page.html"
    assert cli.main(["skew-report", "--mode", "exact", "--html", str(page)]) == 0
    assert f"html: {page}" in capsys.readouterr().out
    parsed = parse(page.read_text())
    assert parsed.sections["examples"]["table"] == 3

    assert cli.main(["skew-report", "--json", "--mlflow"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # the notes go to stderr: stdout stays JSON
    run_id = captured.err.split("mlflow run: ")[1].split()[0]
    run = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri).get_run(run_id)
    assert run.data.params["mode"] == printed["mode"] == "exact"
    assert run.data.metrics["decisions.missed_frauds"] == printed["decisions"]["missed_frauds"]
    assert (cfg.var_dir / "reports" / f"skew_exact_{printed['date']}.html").exists()
