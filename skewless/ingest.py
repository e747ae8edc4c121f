"""Lands one day of raw transactions: the `ingest` DAG's work, idempotent per day.

A day's data is a file in the drop folder, ``transactions_YYYY-MM-DD.{parquet,csv}``. Landing it
imports it with ``replace=True``: a re-run deletes what the previous run of that file loaded or
quarantined and loads it again, so the day's partition is rewritten, never duplicated.
``stage_days`` cuts a simulated (or any) frame into such files.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from skewless import importer, settings

PREFIX = "transactions_"
SUFFIXES = (".parquet", ".csv")


def drop_files(day: date, cfg: settings.Settings | None = None) -> list[Path]:
    cfg = cfg or settings.load()
    return [
        cfg.drop_dir / f"{PREFIX}{day.isoformat()}{suffix}"
        for suffix in SUFFIXES
        if (cfg.drop_dir / f"{PREFIX}{day.isoformat()}{suffix}").exists()
    ]


def expected_file(day: date, cfg: settings.Settings | None = None) -> Path:
    """Where the day's drop file is expected (Parquet; a .csv of the same name is taken too)."""
    cfg = cfg or settings.load()
    return cfg.drop_dir / f"{PREFIX}{day.isoformat()}.parquet"


def stage_days(
    frame, cfg: settings.Settings | None = None, *, timestamp_column: str = "event_timestamp"
):
    """Writes one Parquet drop file per event day of ``frame``; returns {day: path}."""
    cfg = cfg or settings.load()
    cfg.drop_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for day, part in frame.groupby(frame[timestamp_column].dt.date, sort=True):
        path = cfg.drop_dir / f"{PREFIX}{day.isoformat()}.parquet"
        part.to_parquet(path, index=False)
        out[day] = path
    return out


def land_day(
    day: date, *, mapping: dict[str, str] | None = None, cfg: settings.Settings | None = None
) -> dict:
    """Imports the day's drop file(s), their columns mapped by ``mapping`` (default: the
    SKEWLESS_DROP_MAP setting; a mapped column missing from a file fails naming it). Raises
    FileNotFoundError naming the expected path."""
    cfg = cfg or settings.load()
    if mapping is None and cfg.drop_map:
        mapping = importer.parse_mapping(list(cfg.drop_map))
    files = drop_files(day, cfg)
    if not files:
        raise FileNotFoundError(
            f"no data landed for {day}: expected {expected_file(day, cfg)} (or .csv)"
        )
    summaries = [
        importer.import_transactions(path, mapping, warehouse=cfg.warehouse_path, replace=True)
        for path in files
    ]
    total = {
        key: sum(s[key] for s in summaries)
        for key in ("rows_read", "rows_loaded", "rows_quarantined")
    }
    reasons: dict[str, int] = {}
    for summary in summaries:
        for reason, n in summary["quarantine_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    return {
        "day": day.isoformat(),
        "files": [str(p) for p in files],
        **total,
        "quarantine_reasons": reasons,
    }
