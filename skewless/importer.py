"""`skewless import transactions`: a CSV or Parquet file into raw.transactions.

The whole import is DuckDB SQL in one transaction, so a failure writes nothing:
1. the file's columns are resolved to the canonical ones (``--map canonical=source``, else the same
   name, case-insensitively); extra columns are ignored, missing required/mapped ones are an error;
2. one pass over the file numbers the data rows in file order (1-based, header excluded) and
   keeps each canonical value as the text it arrived as and as its parsed, typed value;
3. each row gets the first failing check as its reason (``_CHECKS``, in order) or none;
4. valid rows go to raw.transactions, the others, as text, to raw.transactions_quarantine.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from skewless import schemas
from skewless import warehouse as _warehouse

CANONICAL = tuple(schemas.RAW_TRANSACTION_COLUMNS)
_IDS = (schemas.EVENT_ID, *schemas.ENTITY_KEYS)
_TIMESTAMPS = ("event_timestamp", "arrival_timestamp", "label_timestamp")
MAP_SYNTAX = "--map canonical=source (e.g. --map transaction_id=TX_ID --map amount=TX_AMOUNT)"
_CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_FLOATS = ("FLOAT", "DOUBLE", "REAL")
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
_NUMERIC = (*_INTEGERS, *("U" + kind for kind in _INTEGERS), *_FLOATS)


class TransactionImportError(Exception):
    """The file cannot be imported; the message names the column or file and the reason."""


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``["transaction_id=TX_ID", ...]`` -> ``{"transaction_id": "TX_ID", ...}``."""
    mapping: dict[str, str] = {}
    for item in items:
        canonical, sep, source = (part.strip() for part in item.partition("="))
        if not sep or not canonical or not source:
            raise TransactionImportError(f"malformed mapping {item!r}: expected {MAP_SYNTAX}")
        if canonical not in CANONICAL:
            raise TransactionImportError(
                f"unknown canonical column {canonical!r} in {item!r}: expected one of "
                f"{', '.join(CANONICAL)}, written as {MAP_SYNTAX}"
            )
        if mapping.get(canonical, source) != source:
            raise TransactionImportError(
                f"{canonical} is mapped twice ({mapping[canonical]!r} and {source!r}): "
                f"give one {MAP_SYNTAX}"
            )
        mapping[canonical] = source
    return mapping


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _reader(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return f"read_csv({_literal(str(path))}, all_varchar = true, header = true)"
    if name.endswith(_PARQUET_SUFFIXES):
        return f"read_parquet({_literal(str(path))})"
    raise TransactionImportError(
        f"{path}: unknown file type {path.suffix!r}: expected CSV "
        f"({', '.join(_CSV_SUFFIXES)}) or Parquet ({', '.join(_PARQUET_SUFFIXES)})"
    )


def _resolve(path: Path, columns: dict[str, str], mapping: dict[str, str]) -> dict[str, str | None]:
    """canonical -> the file's column (None: optional and absent)."""
    unknown = sorted(set(mapping) - set(CANONICAL))
    if unknown:
        parse_mapping([f"{name}={mapping[name]}" for name in unknown])  # raises the usual message
    by_lower: dict[str, list[str]] = {}
    for name in columns:
        by_lower.setdefault(name.lower(), []).append(name)
    resolved: dict[str, str | None] = {}
    problems = []
    for canonical in CANONICAL:
        wanted = mapping.get(canonical, canonical)
        found = [wanted] if wanted in columns else by_lower.get(wanted.lower(), [])
        if len(found) == 1:
            resolved[canonical] = found[0]
        elif len(found) > 1:
            problems.append(f"{canonical}: column {wanted!r} is ambiguous ({', '.join(found)})")
        elif canonical in mapping:
            problems.append(f"{canonical}: mapped column {wanted!r} (--map {canonical}={wanted})")
        elif canonical in schemas.REQUIRED_COLUMNS:
            problems.append(f"{canonical}: required column {canonical!r} (no --map given)")
        else:
            resolved[canonical] = None
    if problems:
        raise TransactionImportError(
            f"{path}: missing or unusable column(s):\n  "
            + "\n  ".join(problems)
            + f"\nthe file's columns are: {', '.join(columns) or '(none)'}"
            + f"\nmap differently named columns with {MAP_SYNTAX}"
        )
    return resolved


def _exprs(canonical: str, column: str | None, kind: str) -> tuple[str, str]:
    """(original value as text, parsed typed value) for one canonical column."""
    sql_type = schemas.RAW_TRANSACTION_COLUMNS[canonical]
    if column is None:
        return "NULL::VARCHAR", f"NULL::{sql_type}"
    col = _ident(column)
    if kind in _FLOATS and canonical != "amount":  # NaN in a float column = missing (pandas).
        # Not isnan(): on Parquet, DuckDB trusts min/max statistics, which leave NaN out.
        text = f"CAST({col} AS VARCHAR)"
        text = f"CASE WHEN {text} NOT IN ('nan', '-nan') THEN {text} END"
    else:
        text = f"CAST({col} AS VARCHAR)"
    blank = f"nullif(trim({text}), '')"
    if canonical in _IDS:  # 123 and "123.0" -> "123"
        parsed = rf"regexp_replace({blank}, '^(-?[0-9]+)\.0+$', '\1')"
    elif canonical in _TIMESTAMPS:
        if kind.startswith(("TIMESTAMP", "DATE")):  # WITH TIME ZONE -> UTC (session time zone)
            ts = f"CAST({col} AS TIMESTAMP)"
        else:  # ISO text; an offset converts to UTC, none means UTC
            ts = f"CAST(TRY_CAST({blank} AS TIMESTAMPTZ) AS TIMESTAMP)"
        parsed = f"CASE WHEN isfinite({ts}) THEN {ts} END"
    elif canonical == "amount":
        numeric = kind in _NUMERIC or kind.startswith("DECIMAL")
        parsed = f"CAST({col} AS DOUBLE)" if numeric else f"TRY_CAST({blank} AS DOUBLE)"
    else:  # is_fraud: 0/1, "0"/"1", true/false, 0.0/1.0
        word, number = f"lower({blank})", f"TRY_CAST({blank} AS DOUBLE)"
        parsed = (
            f"CASE WHEN {word} IN ('true', 'false') THEN ({word} = 'true')::TINYINT"
            f" WHEN {number} IN (0, 1) THEN {number}::TINYINT END"
        )
    return text, parsed


def _blank(name: str) -> str:
    return f"nullif(trim(t_{name}), '') IS NULL"


def _unparseable(name: str) -> str:
    return f"NOT {_blank(name)} AND v_{name} IS NULL"


# (reason, condition); a row's reason is the first that holds. `repeated` and `loaded` come from
# the checking query.
_CHECKS = [
    *((f"null {key}", f"v_{key} IS NULL") for key in _IDS),
    ("null event_timestamp", _blank("event_timestamp")),
    ("unparseable event_timestamp", "v_event_timestamp IS NULL"),
    ("future event_timestamp", "v_event_timestamp > $now"),
    ("null amount", _blank("amount")),
    ("non-numeric amount", "v_amount IS NULL"),
    ("non-finite amount", "NOT isfinite(v_amount)"),
    ("negative amount", "v_amount < 0"),
    ("invalid is_fraud", _unparseable("is_fraud")),
    ("unparseable arrival_timestamp", _unparseable("arrival_timestamp")),
    ("arrival_timestamp before event_timestamp", "v_arrival_timestamp < v_event_timestamp"),
    ("unparseable label_timestamp", _unparseable("label_timestamp")),
    ("label_timestamp before event_timestamp", "v_label_timestamp < v_event_timestamp"),
    ("duplicate transaction_id in file", "repeated"),
    ("duplicate transaction_id already loaded", "loaded"),
]


def _utc_naive(moment: datetime | None) -> datetime:
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def import_transactions(
    path: Path,
    mapping: dict[str, str] | None = None,
    *,
    warehouse: Path | None = None,
    now: datetime | None = None,
    replace: bool = False,
) -> dict:
    """Loads ``path`` into raw.transactions; returns a JSON-able summary of what went where.

    ``replace``: first delete every row an earlier import of this same file loaded or quarantined,
    in the same transaction, so that re-running an ingest rewrites its partition instead of
    quarantining the whole file as duplicates.
    """
    started = time.perf_counter()
    path = Path(path).expanduser().resolve()
    reader = _reader(path)
    if not path.is_file():
        raise TransactionImportError(f"{path}: no such file")
    lineage = {"source": str(path), "loaded_at": _utc_naive(None)}
    try:
        con = _warehouse.connect(warehouse)
    except duckdb.Error as exc:
        raise TransactionImportError(f"cannot open the warehouse: {exc}") from exc
    try:
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
        except duckdb.Error as exc:
            raise TransactionImportError(f"{path}: cannot read the file: {exc}") from exc
        select = _select(path, {row[0]: row[1] for row in described}, mapping or {})
        con.execute("SET preserve_insertion_order = true")  # the default; row numbers rely on it
        con.execute("BEGIN TRANSACTION")
        try:
            counts = _load(con, path, reader, select, lineage, now=now, replace=replace)
            con.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):  # keep the original error
                con.execute("ROLLBACK")
            if isinstance(exc, duckdb.Error):
                raise TransactionImportError(
                    f"{path}: import failed, nothing written: {exc}"
                ) from exc
            raise
    finally:
        con.close()
    reasons = {reason: n for reason, n in counts if reason is not None}
    loaded = sum(n for reason, n in counts if reason is None)
    return {
        "source_file": str(path),
        "rows_read": loaded + sum(reasons.values()),
        "rows_loaded": loaded,
        "rows_quarantined": sum(reasons.values()),
        "quarantine_reasons": reasons,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _select(path: Path, columns: dict[str, str], mapping: dict[str, str]) -> list[str]:
    """Per canonical column: its text as in the file (t_<name>) and its parsed value (v_<name>)."""
    select = []
    for name, column in _resolve(path, columns, mapping).items():
        text, parsed = _exprs(name, column, columns.get(column, "VARCHAR"))
        select += [f"{text} AS t_{name}", f"{parsed} AS v_{name}"]
    return select


def _load(con, path: Path, reader: str, select, lineage, *, now, replace: bool) -> list[tuple]:
    """Inside the caller's transaction: numbers and checks every row of the file, inserts the good
    ones into raw.transactions and the others, with their reason, into the quarantine. Returns
    (reason or None, rows) counts."""
    reason = "CASE " + " ".join(f"WHEN {c} THEN '{r}'" for r, c in _CHECKS) + " END"
    if replace:
        for table in (schemas.TRANSACTIONS_TABLE, schemas.QUARANTINE_TABLE):
            con.execute(f"DELETE FROM {table} WHERE source_file = ?", [str(path)])
    con.execute(  # a streaming window: numbers the rows in file order
        "CREATE TEMP TABLE _import_rows AS SELECT row_number() OVER () AS source_row,"
        f" {', '.join(select)} FROM {reader}"
    )
    con.execute(
        f"""CREATE TEMP TABLE _import_checked AS
        SELECT *, {reason} AS reason FROM (
          SELECT r.*, r.source_row > f.first_row AS repeated,
            t.transaction_id IS NOT NULL AS loaded
          FROM _import_rows r
          LEFT JOIN (SELECT v_transaction_id, min(source_row) AS first_row
                     FROM _import_rows GROUP BY ALL) f USING (v_transaction_id)
          LEFT JOIN {schemas.TRANSACTIONS_TABLE} t ON t.transaction_id = r.v_transaction_id
        )""",
        {"now": _utc_naive(now)},
    )
    con.execute(
        f"INSERT INTO {schemas.TRANSACTIONS_TABLE} ({', '.join(CANONICAL)}, source_file,"
        f" loaded_at) SELECT {', '.join('v_' + n for n in CANONICAL)}, $source, $loaded_at"
        " FROM _import_checked WHERE reason IS NULL",
        lineage,
    )
    con.execute(
        f"INSERT INTO {schemas.QUARANTINE_TABLE} (source_row, {', '.join(CANONICAL)},"
        f" reason, source_file, loaded_at) SELECT source_row,"
        f" {', '.join('t_' + n for n in CANONICAL)}, reason, $source, $loaded_at"
        " FROM _import_checked WHERE reason IS NOT NULL ORDER BY source_row",
        lineage,
    )
    counts = con.execute(
        "SELECT reason, count(*) FROM _import_checked GROUP BY reason ORDER BY 2 DESC, 1"
    ).fetchall()
    con.execute("DROP TABLE _import_rows")
    con.execute("DROP TABLE _import_checked")
    return counts
