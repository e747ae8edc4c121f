"""Data quality gates: Great Expectations suites for raw transactions and the feature tables.

Two suites:

- ``raw_suite()``: the raw data contract of ``skewless.schemas`` on a slice of ``raw.transactions``.
- ``feature_suite(group)``: derived from the feature declaration, so declaring a feature or a window
  adds its checks. Every feature gets a range check chosen by its aggregation, and windows of the
  same count-like aggregate must nest (a longer window never holds less than a shorter one).

``validate_raw`` / ``validate_features`` run a suite on a pandas DataFrame and return a ``Report``;
``check(report)`` raises ``DataQualityError`` (its str() is the readable report) when a check failed.
The reports live in skewless/quality_report.py and are re-exported here.

Great Expectations costs seconds to import and logs a lot: it is imported inside the functions that
need it, once, with its loggers at WARNING and progress bars off, and runs in an in-memory
(ephemeral) context cached for the process. Nothing is written anywhere but by ``save()``.
For speed on millions of rows each expectation is validated on a batch of just the columns it
reads, and GX's per-batch data fingerprint (an MD5 of the whole frame) is turned off.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from skewless import features, schemas, settings
from skewless.features import Agg, FeatureGroup, Grain

# The reports (skewless/quality_report.py): other code reads them as quality.<name>.
from skewless.quality_report import SAMPLE_SIZE, FailedCheck, Report, failed_check
from skewless.quality_report import DataQualityError as DataQualityError
from skewless.quality_report import check as check
from skewless.quality_report import save as save

if TYPE_CHECKING:
    import pandas as pd

RAW_SUITE = "raw_transactions"
FEATURE_SUITE_PREFIX = "features_"

# Raw columns the contract holds non-negative (amount >= 0; is_fraud in {0, 1}): sums and means of
# them are >= 0 and their window sums nest.
NON_NEGATIVE_RAW_COLUMNS = frozenset({"amount", "is_fraud"})

# Aggregates whose value over a window can only grow with the window (for non-negative columns).
NESTED_AGGS = (Agg.COUNT, Agg.SUM, Agg.COUNT_DISTINCT)

# Window sums of the same events add them in different orders: compare them at this precision.
SUM_DECIMALS = 6

_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}


# --- Great Expectations, lazily -------------------------------------------------------------------


def _quiet_gx_loggers() -> None:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # Some GX modules set their own logger level (INFO) at import.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (
            name.startswith("great_expectations")
            and isinstance(logger, logging.Logger)
            and logging.NOTSET < logger.level < logging.WARNING
        ):
            logger.setLevel(logging.WARNING)


def _gx():
    """The great_expectations module, imported on first use with its loggers quiet."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    _quiet_gx_loggers()
    return gx


@functools.cache
def _batch_definition():
    """One in-memory context, pandas data source and whole-dataframe batch definition a process."""
    gx = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    # GX hashes every pandas batch under 1 GB for a fingerprint in the result metadata: that hash
    # is most of the time spent validating a million rows, and nothing here reads it.
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0
    _quiet_gx_loggers()
    asset = context.data_sources.add_pandas("skewless").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


_lock = threading.Lock()


def _columns_of(expectation) -> tuple[str, ...]:
    kwargs = expectation.configuration.kwargs
    if "column" in kwargs:
        return (kwargs["column"],)
    if "column_A" in kwargs:
        return (kwargs["column_A"], kwargs["column_B"])
    return ()


def _validate(suite, frame: pd.DataFrame, *, table=None, day=None) -> Report:
    """Runs ``suite`` on ``frame``, one batch per set of columns the expectations read.

    GX's pandas engine copies and filters the whole batch for most metrics, so a wide frame costs
    (columns x expectations); giving each expectation only its own columns keeps it linear.
    """
    import copy

    gx = _gx()
    started = time.perf_counter()
    by_columns: dict[tuple[str, ...], list] = {}
    for expectation in suite.expectations:
        present = tuple(c for c in _columns_of(expectation) if c in frame.columns)
        by_columns.setdefault(present, []).append(copy.copy(expectation))
    results = []
    with _lock:
        definition = _batch_definition()
        for columns, expectations in by_columns.items():
            part = frame[list(columns)]
            batch = definition.get_batch(batch_parameters={"dataframe": part})
            part_suite = gx.ExpectationSuite(name=suite.name, expectations=expectations)
            results.extend(batch.validate(part_suite, result_format=dict(_RESULT_FORMAT)).results)
    results.sort(key=lambda r: (r.expectation_config.meta or {}).get("order", 0))
    return Report(
        suite=suite.name,
        success=all(r.success for r in results),
        rows=len(frame),
        checks=len(results),
        failed=[failed_check(r) for r in results if not r.success],
        table=table,
        day=day.date().isoformat() if isinstance(day, datetime) else day,
        seconds=round(time.perf_counter() - started, 3),
    )


def _suite(gx, name: str, expectations: list):
    """An ExpectationSuite whose expectations remember their order (reports list failures so)."""
    for order, expectation in enumerate(expectations):
        expectation.meta = {**(expectation.meta or {}), "order": order}
    return gx.ExpectationSuite(name=name, expectations=expectations)


# --- Raw transactions ----------------------------------------------------------------------------


def _day_bounds(day: date | datetime | str) -> tuple[datetime, datetime]:
    if isinstance(day, str):
        day = date.fromisoformat(day[:10])
    if isinstance(day, datetime):
        day = day.date()
    start = datetime(day.year, day.month, day.day)
    return start, start + timedelta(days=1)


def raw_suite(day: date | datetime | str | None = None, *, optional=schemas.OPTIONAL_COLUMNS):
    """The raw contract as an ExpectationSuite; ``day`` adds "every event within that UTC day".

    ``optional``: the optional columns present (their checks are left out for the others).
    """
    gx = _gx()
    E = gx.expectations
    out: list = [E.ExpectTableRowCountToBeBetween(min_value=1)]
    for column in schemas.REQUIRED_COLUMNS:
        out.append(E.ExpectColumnToExist(column=column))
        out.append(E.ExpectColumnValuesToNotBeNull(column=column))
    out.append(E.ExpectColumnValuesToBeUnique(column="transaction_id"))
    out.append(E.ExpectColumnValuesToBeBetween(column="amount", min_value=0))
    if day is not None:
        start, end = _day_bounds(day)
        out.append(
            E.ExpectColumnValuesToBeBetween(
                column="event_timestamp", min_value=start, max_value=end, strict_max=True
            )
        )
    if "is_fraud" in optional:
        out.append(E.ExpectColumnValuesToBeInSet(column="is_fraud", value_set=[0, 1]))
    for later in ("arrival_timestamp", "label_timestamp"):
        if later in optional:
            out.append(
                E.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=later,
                    column_B="event_timestamp",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                )
            )
    return _suite(gx, RAW_SUITE, out)


def _naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Time-zone-aware timestamp columns as naive UTC, like the warehouse stores them."""
    import pandas as pd

    aware = {
        name: frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
        for name in frame.columns
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype)
    }
    return frame.assign(**aware) if aware else frame


def validate_raw(
    frame: pd.DataFrame, *, day: date | datetime | str | None = None, table: str | None = None
) -> Report:
    """Validates a slice of raw transactions (all of it, or the rows of one UTC ``day``)."""
    frame = _naive_utc(frame)
    optional = tuple(c for c in schemas.OPTIONAL_COLUMNS if c in frame.columns)
    label = None if day is None else _day_bounds(day)[0].date().isoformat()
    return _validate(raw_suite(day, optional=optional), frame, table=table, day=label)


# --- Feature tables ------------------------------------------------------------------------------


def _non_negative(aggregate: features.Aggregate) -> bool:
    return aggregate.column in NON_NEGATIVE_RAW_COLUMNS


def nested_pairs(group: FeatureGroup) -> list[tuple[str, str]]:
    """(longer, shorter) feature names whose values must satisfy longer >= shorter."""
    order = sorted(group.windows, key=features.window_length)
    pairs = []
    for aggregate in group.aggregates:
        if aggregate.agg not in NESTED_AGGS or not aggregate.windowed:
            continue
        if aggregate.agg is Agg.SUM and not _non_negative(aggregate):
            continue
        names = [group.feature_name(aggregate, w) for w in order]
        pairs.extend((longer, shorter) for shorter, longer in zip(names, names[1:], strict=False))
    return pairs


def feature_suite(group: FeatureGroup):
    """The group's checks, derived from its declaration (a new feature or window adds its own)."""
    gx = _gx()
    E = gx.expectations
    key = group.entity.join_key
    out: list = [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToNotBeNull(column=key),
        E.ExpectColumnValuesToNotBeNull(column="event_timestamp"),
    ]
    for aggregate, _window, name in group.window_features():
        agg = aggregate.agg
        if agg in (Agg.COUNT, Agg.COUNT_DISTINCT):
            out.append(E.ExpectColumnValuesToNotBeNull(column=name))
            out.append(E.ExpectColumnValuesToBeBetween(column=name, min_value=0))
        elif agg is Agg.SUM:
            out.append(E.ExpectColumnValuesToNotBeNull(column=name))
            if _non_negative(aggregate):
                out.append(E.ExpectColumnValuesToBeBetween(column=name, min_value=0))
        elif agg is Agg.AVG:  # null when the window is empty
            if _non_negative(aggregate):
                out.append(E.ExpectColumnValuesToBeBetween(column=name, min_value=0))
        elif agg is Agg.LABELED_RATE:  # null when no label is known yet
            out.append(E.ExpectColumnValuesToBeBetween(column=name, min_value=0, max_value=1))
        elif agg is Agg.SECONDS_SINCE_LAST:  # null before the first event
            out.append(E.ExpectColumnValuesToBeBetween(column=name, min_value=0, strict_min=True))
        else:  # a new aggregation: at least its column must exist
            out.append(E.ExpectColumnToExist(column=name))
    for ratio in group.ratios:  # null when the denominator is 0
        out.append(E.ExpectColumnValuesToBeBetween(column=ratio.name, min_value=0))
    for longer, shorter in nested_pairs(group):
        out.append(
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=longer,
                column_B=shorter,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            )
        )
    return _suite(gx, FEATURE_SUITE_PREFIX + group.name, out)


def validate_features(
    group: FeatureGroup, frame: pd.DataFrame, *, day: str | None = None, table: str | None = None
) -> Report:
    """Validates rows of the group's feature table (SUM features compared at SUM_DECIMALS)."""
    sums = [
        name
        for aggregate, _w, name in group.window_features()
        if aggregate.agg is Agg.SUM and name in frame.columns
    ]
    if sums:
        frame = frame.assign(**{name: frame[name].round(SUM_DECIMALS) for name in sums})
    return _validate(feature_suite(group), frame, table=table or group.name, day=day)


# --- The warehouse -------------------------------------------------------------------------------


def _missing_table(suite: str, table: str, day: str | None, error: Exception) -> Report:
    message = str(error).strip().splitlines()[0][:160]
    failure = FailedCheck("expect_table_to_exist", None, f"table {table}", f"error: {message}")
    return Report(suite, False, 0, 1, [failure], table=table, day=day)


def validate_warehouse(
    cfg: settings.Settings | None = None, *, day: date | datetime | str | None = None
) -> list[Report]:
    """Validates raw.transactions and every feature group's table in the warehouse (read-only).

    ``day``: raw rows of that UTC day; transaction-grain feature rows of that day plus the snapshot
    rows; daily-grain rows at the midnight after it (the run's cutoff). None: every row. Returns the reports (no raise).
    """
    import duckdb

    from skewless import warehouse

    cfg = cfg or settings.load()
    bounds = None if day is None else _day_bounds(day)
    label = None if bounds is None else bounds[0].date().isoformat()
    reports = []
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        table = schemas.TRANSACTIONS_TABLE
        sql, params = f"select * from {table}", []
        if bounds:
            sql += " where event_timestamp >= ? and event_timestamp < ?"
            params = list(bounds)
        try:
            frame = con.execute(sql, params).df()
        except duckdb.CatalogException as error:
            reports.append(_missing_table(RAW_SUITE, table, label, error))
        else:
            reports.append(validate_raw(frame, day=day, table=table))
        for group in features.GROUPS:
            sql, params = f"select * from {group.name}", []
            if bounds and group.grain is Grain.DAILY:
                # the rows a run for `day` produces: at the cutoff, midnight after the day
                sql += " where event_timestamp = ?"
                params = [bounds[1]]
            elif bounds:
                sql += " where (event_timestamp >= ? and event_timestamp < ?) or is_snapshot"
                params = list(bounds)
            try:
                frame = con.execute(sql, params).df()
            except duckdb.CatalogException as error:
                suite = FEATURE_SUITE_PREFIX + group.name
                reports.append(_missing_table(suite, group.name, label, error))
            else:
                reports.append(validate_features(group, frame, day=label))
    finally:
        con.close()
    return reports
