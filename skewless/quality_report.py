"""The reports of the data quality gates (skewless/quality.py): what failed, readable and as JSON.

``Report`` and ``FailedCheck`` hold a suite's outcome; ``check(report)`` raises
``DataQualityError`` (its str() is the readable report) when a check failed; ``save()`` writes a
report as JSON. ``failed_check()`` reads one failed Great Expectations result into a
``FailedCheck`` (without importing GX).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SAMPLE_SIZE = 5  # unexpected values kept per failed check


class DataQualityError(Exception):
    """A suite failed; ``report`` holds the failed checks and str() is the readable report."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.to_text())
        self.report = report

    def __str__(self) -> str:
        return self.report.to_text()

    def __reduce__(self):  # picklable (task runners ship exceptions between processes)
        return (type(self), (self.report,))


@dataclass
class FailedCheck:
    expectation: str  # GX expectation type, e.g. expect_column_values_to_be_between
    column: str | None  # column(s) checked; None for table-level checks
    expected: str  # what was expected, readable: ">= 0", "not null", "a >= b"
    observed: str  # what was found, readable
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: list = field(default_factory=list)  # a few unexpected values


@dataclass
class Report:
    suite: str
    success: bool
    rows: int
    checks: int  # expectations evaluated
    failed: list[FailedCheck] = field(default_factory=list)
    table: str | None = None
    day: str | None = None
    seconds: float | None = None
    validated_at: str = field(
        default_factory=lambda: datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        subject = self.suite + (f" on {self.table}" if self.table else "")
        subject += f" (day {self.day})" if self.day else ""
        if self.success:
            return f"{subject}: OK - {self.checks} checks passed on {self.rows:,} rows"
        lines = [
            f"{subject}: FAILED - {len(self.failed)} of {self.checks} checks failed "
            f"on {self.rows:,} rows"
        ]
        header = ("column", "expectation", "expected", "observed")
        rows = [(f.column or "(table)", f.expectation, f.expected, f.observed) for f in self.failed]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
        for row in [header, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  " + "  ".join([*cells, row[3]]).rstrip())
        return "\n".join(lines)


def check(report: Report) -> Report:
    """Raises DataQualityError unless the report passed; returns the report."""
    if not report.success:
        raise DataQualityError(report)
    return report


def save(report: Report, directory: Path) -> Path:
    """Writes the report as JSON under ``directory`` (e.g. settings.load().var_dir / "quality")."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = report.suite + (f"_{report.day}" if report.day else "") + f"_{stamp}.json"
    path = directory / name
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return path


def _exception_message(info: dict) -> str | None:
    """The first exception message of a result (GX nests them per metric)."""
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "error")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "error")
    return None


def failed_check(result) -> FailedCheck:
    """The readable form of a failed GX validation result."""
    config = result.expectation_config
    kind, kwargs = config.type, dict(config.kwargs)
    res = result.result or {}
    message = _exception_message(result.exception_info or {})
    if "column" in kwargs:
        columns = [kwargs["column"]]
    elif "column_A" in kwargs:
        columns = [kwargs["column_A"], kwargs["column_B"]]
    else:
        columns = []
    check = FailedCheck(kind, ", ".join(columns) or None, _expected(kind, kwargs), "")
    if kind == "expect_column_to_exist":
        check.observed = "missing"
    elif message is not None:
        message = message.strip().splitlines()[0].removeprefix("Error: ")
        check.observed = f"error: {message[:160]}"
    elif "unexpected_count" in res:
        check.unexpected_count = int(res["unexpected_count"])
        percent = res.get("unexpected_percent")
        check.unexpected_percent = None if percent is None else round(float(percent), 4)
        sample = (res.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]
        check.sample = [_plain(v) for v in sample]
        check.observed = f"{check.unexpected_count:,} unexpected"
        if percent is not None:
            check.observed += f" ({_short_percent(percent)})"
        if check.sample:
            check.observed += ", e.g. " + ", ".join(_show(v) for v in check.sample)
    elif "observed_value" in res:
        check.observed = _show(_plain(res["observed_value"]))
    else:
        check.observed = "failed"
    return check


def _expected(kind: str, kw: dict) -> str:
    if kind == "expect_column_to_exist":
        return "column present"
    if kind == "expect_column_values_to_not_be_null":
        return "not null"
    if kind == "expect_column_values_to_be_unique":
        return "unique"
    if kind == "expect_column_values_to_be_in_set":
        return "in {" + ", ".join(_show(v) for v in kw.get("value_set", [])) + "}"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        op = ">=" if kw.get("or_equal") else ">"
        return f"{kw['column_A']} {op} {kw['column_B']}"
    if kind in ("expect_column_values_to_be_between", "expect_table_row_count_to_be_between"):
        subject = "row count " if kind.startswith("expect_table") else ""
        low, high = kw.get("min_value"), kw.get("max_value")
        lo_op = ">" if kw.get("strict_min") else ">="
        hi_op = "<" if kw.get("strict_max") else "<="
        if low is not None and high is not None:
            left = "(" if kw.get("strict_min") else "["
            right = ")" if kw.get("strict_max") else "]"
            return f"{subject}in {left}{_show(_plain(low))}, {_show(_plain(high))}{right}"
        if low is not None:
            return f"{subject}{lo_op} {_show(_plain(low))}"
        return f"{subject}{hi_op} {_show(_plain(high))}"
    rest = {k: v for k, v in kw.items() if k not in ("batch_id", "column")}
    return json.dumps(rest, default=str)


def _plain(value: Any) -> Any:
    """JSON-friendly: numpy scalars to Python, timestamps to ISO text, NaN to None."""
    import numpy as np
    import pandas as pd

    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.datetime64 | np.timedelta64):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        return None if pd.isna(value) else str(value.isoformat())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else repr(value)
    return str(value)


def _short_percent(percent: float) -> str:
    return f"{percent:.2g}%" if percent < 1 else f"{percent:.1f}%"
