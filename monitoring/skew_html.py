"""The skew report (monitoring/skew.py) as one self-contained HTML page.

Everything comes from the report dict (its ``histograms`` carry the binned data), so a saved JSON
renders the same page. Plots are matplotlib figures (Agg, no pyplot, no display) embedded as base64
PNG: no network, no scripts, no external CSS. Every value is escaped.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape

from monitoring import skew_gate
from monitoring.skew_lag import arrival_sentence, duration, sentences
from skewless.schemas import EVENT_ID
from skewless.tasks import realtime_task

PLOTTED_FEATURES = 6  # distribution plots for the most skewed features only
SERVED, OFFLINE = "#d95f02", "#1b9e77"
_TEXT_COLUMNS = {EVENT_ID, realtime_task().card, "event_timestamp", "served_at"}
_TEXT_COLUMNS |= {"offline_decision", "served_decision", "consequence"}

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
div.scroll { overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
tr.skewed td { background: #fff4e5; }
tr.anomaly td { background: #fde2e1; }
tr.missed td, tr.alert td { background: #fde0dd; }
figure { display: inline-block; margin: 0.3em; }
figcaption { font-size: 0.85em; text-align: center; }
.note { color: #555; font-size: 0.9em; }
"""


def _fmt(value, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _table(header: list[str], rows: list[list], *, row_classes=None, text_columns=()) -> str:
    def cell(tag, value, column):
        cls = ' class="text"' if column in text_columns else ""
        return f"<{tag}{cls}>{escape(_fmt(value))}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = row_classes[r] if row_classes and row_classes[r] else ""
        attr = f' class="{escape(cls)}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(cell("td", v, i) for i, v in enumerate(row)) + "</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'  # a wide table scrolls, not the page


def _png(fig, alt: str, caption: str = "") -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}">{cap}</figure>'


def _figure(width: float = 4.2, height: float = 2.8):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80)
    return fig, fig.subplots()


def _feature_plot(name: str, histogram: dict) -> str:
    """Served vs offline density on the report's shared quantile bins (the last share: nulls)."""
    edges = histogram["edges"]
    served, offline = histogram["served"], histogram["offline"]
    fig, ax = _figure()
    if len(edges) >= 2:
        widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        for shares, color, label in ((offline, OFFLINE, "offline"), (served, SERVED, "served")):
            density = [s / w for s, w in zip(shares[:-1], widths, strict=True)]
            ax.stairs(density, edges, color=color, label=label, linewidth=1.5)
        ax.set_ylabel("density")
    elif len(edges) == 1:  # one distinct value
        ax.bar(["offline", "served"], [offline[0], served[0]], color=[OFFLINE, SERVED])
        ax.set_ylabel(f"share = {edges[0]:.4g}")
    ax.set_title(f"{name}\nnulls: served {served[-1]:.1%}, offline {offline[-1]:.1%}", fontsize=9)
    if len(edges) >= 2:
        ax.legend(fontsize=8)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _png(fig, f"distribution of {name}, served vs offline")


def _score_plots(histograms: dict) -> str:
    score, drift = histograms["score"], histograms["score_drift"]
    fig, ax = _figure()
    for key, color in (("offline", OFFLINE), ("served", SERVED)):
        ax.stairs(score[key], score["edges"], color=color, label=key, linewidth=1.5)
    ax.set(xlabel="fraud probability", ylabel="requests", yscale="symlog")
    ax.set_title("scores, served vs offline", fontsize=9)
    ax.legend(fontsize=8)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    out = _png(fig, "score distribution, served vs offline")
    fig, ax = _figure()
    ax.stairs(drift["counts"], drift["edges"], fill=True, color=SERVED)
    ax.set(xlabel="served - offline score", ylabel="requests", yscale="symlog")
    ax.set_title("score drift", fontsize=9)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return out + _png(fig, "score drift histogram")


def _bars(title: str, labels: list[str], series: dict[str, list], alt: str) -> str:
    fig, ax = _figure()
    width = 0.8 / max(len(series), 1)
    colors = {"served": SERVED, "offline": OFFLINE}
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        heights = [0.0 if v is None else v for v in values]
        ax.bar(xs, heights, width, label=name, color=colors.get(name, SERVED))
    ax.set_xticks(range(len(labels)), labels)
    ax.set_title(title, fontsize=9)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _png(fig, alt)


def most_skewed(report: dict, n: int = PLOTTED_FEATURES) -> list[str]:
    """The features with the largest JS divergence (then the lowest match rate)."""
    names = list(report["features"])

    def key(name):
        s = report["features"][name]
        rate = 1.0 if s["match_rate"] is None else s["match_rate"]
        return (-(s["js_divergence"] or 0.0), rate, names.index(name))

    return sorted(names, key=key)[:n]


def render(report: dict) -> str:
    """The report as an HTML document (a string)."""
    parts = [
        *_summary(report),
        *_quality(report["quality"]),
        *_decisions(report["decisions"]),
        *_causes(report["causes"]),
        *_lags(report.get("lags", {}), report.get("arrivals")),
        *_features(report),
    ]
    histograms = report.get("histograms", {})
    if "score" in histograms:
        parts += _score(report["score"], histograms)
    if report.get("examples", {}).get("impact"):
        parts += _examples(report)
    parts.append("</body></html>")
    return "\n".join(parts)


def _summary(report: dict) -> list[str]:
    """The document's head, its title and the summary table."""
    mode, day = report["mode"], report.get("date", "")
    score, dec = report["score"], report["decisions"]
    title = f"skewless skew report: {mode} mode, {day}"
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="note">Served features and scores (the sidecar\'s log) against the offline '
        "truth recomputed by dbt for the same transactions.</p>",
        '<section id="summary"><h2>Summary</h2>',
        _table(
            ["requests", "mode", "date", "model version", "threshold", "mean |score drift|"]
            + ["p95 |score drift|", "flipped", "missed frauds", "false alerts"]
            + ["anomalies (gating)"],
            [
                [report["requests"], mode, day, ", ".join(report.get("model_versions", []))]
                + [report.get("threshold"), score["mean_abs_drift"], score["p95_abs_drift"]]
                + [dec["flipped"], dec["missed_frauds"], dec["false_alerts"]]
                + [_anomaly_count(report.get("anomalies", []))]
            ],
            text_columns=(1, 2, 3, 10),
        ),
        "</section>",
    ]


def _anomaly_count(found: list[dict]) -> str:
    n = skew_gate.counts(found)
    return f"{n['anomalies']} ({n['gating']})"


def _anomaly_text(found: list[dict]) -> str:
    """A feature's anomalies as short text: 'match rate 0.54 < 0.99 (gates)'."""
    parts = []
    for a in found:
        sign = "<" if a["bound"] == "min" else ">"
        name = a["metric"].replace("_", " ")
        gate = " (gates)" if a["gate"] else ""
        parts.append(f"{name} {a['value']:.3g} {sign} {a['threshold']:g}{gate}")
    return "; ".join(parts)


def _quality(q: dict) -> list[str]:
    """Average precision and recall of the served and the offline scores."""
    quality_rows = [
        ["average precision", q["served_average_precision"], q["offline_average_precision"]],
        ["recall at threshold", q.get("served_recall"), q.get("offline_recall")],
    ]
    return [
        '<section id="quality"><h2>Quality: served vs offline scores</h2>',
        f'<p class="note">Over {escape(_fmt(q.get("labelled")))} requests with a known label, '
        f"{escape(_fmt(q.get('frauds')))} of them frauds. The gap is what fresher features are "
        "worth.</p>",
        _table(["", "served", "offline"], quality_rows, text_columns=(0,)),
        _bars(
            "quality",
            ["AP", "recall"],
            {"served": [r[1] for r in quality_rows], "offline": [r[2] for r in quality_rows]},
            "average precision and recall, served vs offline",
        ),
        "</section>",
    ]


def _counts(
    section: str, title: str, labels: list[str], values: list, bar_title: str, caption: str
):
    """A section with one row of counts and their bar chart."""
    return [
        f'<section id="{section}"><h2>{title}</h2>',
        _table(labels, [values]),
        _bars(bar_title, labels, {"served": values}, caption),
        "</section>",
    ]


def _decisions(dec: dict) -> list[str]:
    """Flipped decisions, missed frauds and false alerts at the threshold."""
    return _counts(
        "decisions",
        "Decisions at the threshold",
        ["flipped", "missed frauds", "false alerts"],
        [dec["flipped"], dec["missed_frauds"], dec["false_alerts"]],
        "decisions changed by skew",
        "flipped decisions, missed frauds and false alerts",
    )


def _causes(c: dict) -> list[str]:
    """Mismatching feature values by cause."""
    return _counts(
        "causes",
        "Causes of mismatching feature values",
        ["late arrival", "staleness", "logic"],
        [c["late_arrival"], c["staleness"], c["logic"]],
        "mismatching values by cause",
        "mismatching feature values by cause",
    )


def _lags(lags: dict, arrivals: dict | None = None) -> list[str]:
    """How old the rows behind each group's served values were (the lag estimate), and the day's
    late arrivals."""
    if not lags:
        return []
    head = ["feature group", "mismatching requests", "median age", "p90 age", "max age",
            "no row", "median age, all requests"]  # fmt: skip
    rows = [
        [
            group,
            lag["mismatching"],
            duration(lag["age_seconds"]["median"]),
            duration(lag["age_seconds"]["p90"]),
            duration(lag["age_seconds"]["max"]),
            lag["no_row"],
            duration(lag["all_age_seconds"]["median"]),
        ]  # fmt: skip
        for group, lag in lags.items()
    ]
    lines = sentences(lags) + ([f"arrivals: {arrival_sentence(arrivals)}"] if arrivals else [])
    notes = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return [
        '<section id="lags"><h2>Served age per feature group</h2>',
        "<p>A request at t was served each group's values as of the time its row was computed "
        "(the snapshot, the stream's last push, or t itself in exact mode): its age is t minus "
        "that time. Over the mismatching requests it is the delay behind the mismatch.</p>",
        _table(head, rows, text_columns=(0,)),
        f"<ul>{notes}</ul>",
        "</section>",
    ]


def _features(report: dict) -> list[str]:
    """The per-feature table and the distributions of the most skewed features."""
    feature_rows, classes = [], []
    by_feature: dict[str, list[dict]] = {}
    for a in report.get("anomalies", []):
        by_feature.setdefault(a["feature"], []).append(a)
    for name, s in report["features"].items():
        found = by_feature.get(name, [])
        feature_rows.append(
            [name, s["match_rate"], s["mean_abs_diff"], s["p95_abs_diff"]]
            + [s["js_divergence"], s["psi"], _anomaly_text(found)]
        )
        skewed = s["match_rate"] is not None and s["match_rate"] < 1
        classes.append("anomaly" if found else "skewed" if skewed else "")
    histograms = report.get("histograms", {})
    plotted = [n for n in most_skewed(report) if n in histograms.get("features", {})]
    return [
        '<section id="features"><h2>Features</h2>',
        '<p class="note">Match: |served - offline| within 1e-9 relative. JS divergence (bits) '
        "and PSI on 20 shared quantile bins of the pooled values, nulls in a bin of their own."
        "</p>",
        _table(
            ["feature", "match rate", "mean |diff|", "p95 |diff|", "JS divergence", "PSI"]
            + ["past its threshold"],
            feature_rows,
            row_classes=classes,
            text_columns=(0, 6),
        ),
        f"<h3>Distributions of the {len(plotted)} most skewed features</h3>",
        *(_feature_plot(n, histograms["features"][n]) for n in plotted),
        "</section>",
    ]


def _score(score: dict, histograms: dict) -> list[str]:
    """Score drift: its mean and p95, and the score and drift histograms."""
    return [
        '<section id="score"><h2>Score drift</h2>',
        _table(
            ["mean |drift|", "p95 |drift|"],
            [[score["mean_abs_drift"], score["p95_abs_drift"]]],
        ),
        _score_plots(histograms),
        "</section>",
    ]


def _examples(report: dict) -> list[str]:
    """The three tables of a few transactions, flipped decisions highlighted."""
    from monitoring.skew import example_tables

    parts = [
        '<section id="examples"><h2>The three tables</h2>',
        '<p class="note">A few transactions: missed frauds, false alerts and other flipped '
        "decisions first, then the largest score drift. Features shown: those that differ "
        "in these rows (the JSON has every feature).</p>",
    ]
    impact = report["examples"]["impact"]
    row_classes = [
        {"missed fraud": "missed", "false alert": "alert"}.get(r["consequence"], "") for r in impact
    ]
    for heading, (header, rows) in example_tables(report).items():
        text = [i for i, h in enumerate(header) if h in _TEXT_COLUMNS]
        parts += [
            f"<h3>{escape(heading)}</h3>",
            _table(header, rows, row_classes=row_classes, text_columns=text),
        ]
    parts.append("</section>")
    return parts
