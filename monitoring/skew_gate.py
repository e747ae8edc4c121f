"""Skew thresholds and anomalies: which features of a skew report cross their limits.

Every served feature is held to the defaults of ``monitoring/skew_thresholds.yaml`` (a minimum
match rate, a maximum Jensen-Shannon divergence and PSI), replaced per feature and measure by the
``skew_thresholds`` of its declaration. A measure past its limit is an anomaly: ``{feature,
metric, value, threshold, mode, gate}``; ``gate`` says whether it fails the skew_report DAG.
"""

from __future__ import annotations

from pathlib import Path

from skewless.features import REQUEST_FEATURES
from skewless.tasks import realtime_task
from skewless.vocabulary import SKEW_METRICS

DEFAULTS_FILE = Path(__file__).with_name("skew_thresholds.yaml")


def defaults(path: Path = DEFAULTS_FILE) -> dict[str, dict]:
    """{metric: {"min" or "max": limit, "gate": bool}} from the committed file, checked."""
    import yaml

    loaded = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(loaded) - set(SKEW_METRICS))
    if unknown:
        raise ValueError(f"{path}: unknown measures {unknown}: expected {', '.join(SKEW_METRICS)}")
    out = {}
    for metric, spec in loaded.items():
        spec = spec if isinstance(spec, dict) else {}
        bounds = [k for k in ("min", "max") if k in spec]
        if len(bounds) != 1 or not isinstance(spec.get("gate", False), bool):
            raise ValueError(f"{path}: {metric}: expected one of min/max and gate: true|false")
        out[metric] = {bounds[0]: float(spec[bounds[0]]), "gate": spec.get("gate", False)}
    return out


def declared_overrides() -> dict[str, dict[str, float]]:
    """{feature: {metric: limit}} of the realtime task's features that declare their own."""
    features = [f for g in realtime_task().service.groups for f in g.features]
    return {
        f.name: dict(f.skew_thresholds) for f in [*features, *REQUEST_FEATURES] if f.skew_thresholds
    }


def anomalies(features: dict[str, dict], mode: str, limits: dict | None = None) -> list[dict]:
    """The measures of ``features`` (the report's per-feature dict) past their limits."""
    limits = limits or thresholds()
    base, overrides = limits["defaults"], limits["overrides"]
    out = []
    for name, stats in features.items():
        for metric, spec in base.items():
            value = stats.get(metric)
            if value is None:
                continue
            bound = "min" if "min" in spec else "max"
            limit = overrides.get(name, {}).get(metric, spec[bound])
            if (value < limit) if bound == "min" else (value > limit):
                out.append(
                    {
                        "feature": name,
                        "metric": metric,
                        "value": value,
                        "threshold": limit,
                        "bound": bound,
                        "mode": mode,
                        "gate": spec["gate"],
                    }
                )
    return out


def counts(found: list[dict]) -> dict[str, int]:
    """How many anomalies, and how many of them gate."""
    return {"anomalies": len(found), "gating": sum(bool(a["gate"]) for a in found)}


def thresholds() -> dict:
    """What a report records: the defaults and the declared per-feature overrides."""
    return {"defaults": defaults(), "overrides": declared_overrides()}


def table(found: list[dict]) -> str:
    """The anomalies as a readable table (the gate's failure message)."""
    rows = [("mode", "feature", "metric", "value", "limit", "gates")]
    for a in found:
        sign = ">=" if a["bound"] == "min" else "<="
        rows.append(
            (a["mode"], a["feature"], a["metric"], f"{a['value']:.4g}",
             f"{sign} {a['threshold']:g}", "yes" if a["gate"] else "no")
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


class SkewGateFailed(RuntimeError):
    """Gating anomalies in a day's skew reports; the message is their table."""


def check(summaries: list[dict]) -> dict:
    """The gate over a day's reports (``skew_publish.report_day`` summaries, one per mode):
    raises ``SkewGateFailed`` naming the modes and listing every gating anomaly, else returns
    the counts per mode."""
    found = [a for s in summaries for a in s.get("anomalies", [])]
    gating = [a for a in found if a["gate"]]
    per_mode = {s["mode"]: counts(s.get("anomalies", [])) for s in summaries}
    if gating:
        modes = ", ".join(sorted({a["mode"] for a in gating}))
        where = ", ".join(s["json"] for s in summaries if s.get("json"))
        raise SkewGateFailed(
            f"skew gate: {len(gating)} gating anomalies in mode(s) {modes} "
            f"(reports: {where})\n{table(gating)}"
        )
    return per_mode
