"""The data-quality gates of the `build_features` DAG, on one day of data.

A gate validates (skewless.quality), saves every report as JSON under var/quality, logs the readable
text and raises DataQualityError when a check fails, which stops the DAG run before anything
downstream reads the data. Nothing is deleted: failing rows stay where they are for inspection.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

from skewless import ingest, quality, schemas, settings, warehouse

log = logging.getLogger(__name__)


def raw_day_report(day: date, cfg: settings.Settings | None = None) -> quality.Report:
    """The raw suite on the day's rows, plus the share of the day's files that was quarantined."""
    cfg = cfg or settings.load()
    start = datetime.combine(day, time())
    files = [str(p.resolve()) for p in ingest.drop_files(day, cfg)]
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        frame = con.execute(
            f"select * from {schemas.TRANSACTIONS_TABLE}"
            " where event_timestamp >= ? and event_timestamp < ?",
            [start, start + timedelta(days=1)],
        ).df()
        quarantined = loaded = 0
        if files:
            quarantined, loaded = (
                con.execute(
                    f"select count(*) from {table} where source_file in"
                    f" (select unnest(?::varchar[]))",
                    [files],
                ).fetchone()[0]
                for table in (schemas.QUARANTINE_TABLE, schemas.TRANSACTIONS_TABLE)
            )
    finally:
        con.close()
    report = quality.validate_raw(frame, day=day, table=schemas.TRANSACTIONS_TABLE)
    limit = cfg.max_quarantine_share  # SKEWLESS_MAX_QUARANTINE_SHARE, checked by the table
    read = quarantined + loaded
    report.checks += 1
    if read and quarantined / read > limit:
        report.success = False
        report.failed.append(
            quality.FailedCheck(
                expectation="quarantine_share_at_most",
                column=None,
                expected=f"<= {limit:.0%} of the day's rows quarantined",
                observed=f"{quarantined / read:.1%} ({quarantined:,} of {read:,} rows)",
                unexpected_count=quarantined,
            )
        )
    return report


def check_raw_day(day: date, cfg: settings.Settings | None = None) -> quality.Report:
    cfg = cfg or settings.load()
    return _gate([raw_day_report(day, cfg)], cfg)[0]


def check_features_day(day: date, cfg: settings.Settings | None = None) -> list[quality.Report]:
    cfg = cfg or settings.load()
    reports = quality.validate_warehouse(cfg, day=day)
    return _gate([r for r in reports if r.suite != quality.RAW_SUITE], cfg)


def _gate(reports: list[quality.Report], cfg: settings.Settings) -> list[quality.Report]:
    for report in reports:
        path = quality.save(report, cfg.var_dir / "quality")
        (log.info if report.success else log.error)("%s\n(report: %s)", report.to_text(), path)
    for report in reports:
        quality.check(report)
    return reports
