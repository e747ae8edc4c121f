"""skewless.importer: mapping, typing, quarantine reasons, reconciliation and atomicity."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skewless import schemas, warehouse
from skewless.importer import TransactionImportError, import_transactions, parse_mapping

NOW = datetime(2025, 1, 1, tzinfo=UTC)
MAPPING = {
    "transaction_id": "TX_ID",
    "event_timestamp": "TX_DATETIME",
    "customer_id": "CUSTOMER_ID",
    "merchant_id": "TERMINAL_ID",
    "amount": "TX_AMOUNT",
    "is_fraud": "TX_FRAUD",
}

# (csv line, expected reason or None). Source row n is the n-th data line.
CSV_ROWS = [
    ("1,2024-01-01 10:00:00,101,201,12.50,0,a", None),
    ("2,2024-01-01T12:00:00+02:00,102,202,30,1,b", None),
    (",2024-01-01 10:00:00,103,203,5,0,c", "null transaction_id"),
    ("4,2024-01-02 10:00:00,104,204,-1,0,d", "negative amount"),
    ("5,not-a-date,105,205,1,0,e", "unparseable event_timestamp"),
    ("1,2024-01-03 10:00:00,101,201,9,0,f", "duplicate transaction_id in file"),
    ("7,2030-01-01 00:00:00,107,207,1,0,g", "future event_timestamp"),
    ("8,2024-01-04 10:00:00,108,208,abc,0,h", "non-numeric amount"),
    ("9,2024-01-04 10:00:00,109,209,NaN,0,i", "non-finite amount"),
    ("10, 2024-01-05 10:00:00 , 110 ,210,7,,j", None),
    ("11.0,2024-01-05 11:00:00,111.0,211,0,true,k", None),
    ("12,2024-01-05 12:00:00,,212,1,0,l", "null customer_id"),
    ("13,2024-01-05 12:00:00,113,213,,0,m", "null amount"),
    ("14,2024-01-05 12:00:00,114,214,inf,0,n", "non-finite amount"),
    ("15,2024-01-05 12:00:00,115,215,1,2,o", "invalid is_fraud"),
    ("16,,116,216,1,0,p", "null event_timestamp"),
    ("17,2024-01-05 12:00:00,117,,1,0,q", "null merchant_id"),
]


def _write_csv(path, rows=CSV_ROWS):
    header = "TX_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD,EXTRA"
    path.write_text("\n".join([header, *(line for line, _ in rows)]) + "\n")
    return path


def _query(var_dir, sql):
    con = warehouse.connect(var_dir / "warehouse.duckdb", read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _quarantine(var_dir):
    rows = _query(
        var_dir, f"SELECT source_row, reason FROM {schemas.QUARANTINE_TABLE} ORDER BY loaded_at, 1"
    )
    return dict(rows)


def _assert_reconciles(summary):
    assert summary["rows_read"] == summary["rows_loaded"] + summary["rows_quarantined"]
    assert sum(summary["quarantine_reasons"].values()) == summary["rows_quarantined"]


def test_mapped_csv_loads_valid_rows_and_quarantines_each_bad_row_with_its_reason(
    var_dir, tmp_path
):
    path = _write_csv(tmp_path / "tx.csv")
    summary = import_transactions(path, MAPPING, now=NOW)

    _assert_reconciles(summary)
    expected = {n: reason for n, (_, reason) in enumerate(CSV_ROWS, start=1) if reason}
    assert summary["rows_read"] == len(CSV_ROWS)
    assert summary["rows_quarantined"] == len(expected)
    assert summary["source_file"] == str(path.resolve())
    assert _quarantine(var_dir) == expected
    assert summary["quarantine_reasons"]["non-finite amount"] == 2

    loaded = _query(
        var_dir,
        f"SELECT transaction_id, event_timestamp, customer_id, merchant_id, amount, is_fraud,"
        f" arrival_timestamp, label_timestamp, source_file FROM {schemas.TRANSACTIONS_TABLE}"
        " ORDER BY event_timestamp, transaction_id",
    )
    assert [row[0] for row in loaded] == ["1", "2", "10", "11"]
    first, second, tenth, eleventh = loaded
    assert first[1:6] == (datetime(2024, 1, 1, 10), "101", "201", 12.5, 0)
    assert first[6:] == (None, None, str(path.resolve()))
    assert second[1] == datetime(2024, 1, 1, 10)  # +02:00 converted to UTC, stored naive
    assert tenth[1:6] == (datetime(2024, 1, 5, 10), "110", "210", 7.0, None)  # trimmed, no label
    assert eleventh[2] == "111" and eleventh[5] == 1  # float-looking ids lose ".0"; true -> 1


def test_quarantine_keeps_original_text_and_lineage(var_dir, tmp_path):
    path = _write_csv(tmp_path / "tx.csv")
    import_transactions(path, MAPPING, now=NOW)
    rows = _query(
        var_dir,
        "SELECT transaction_id, event_timestamp, customer_id, amount, is_fraud, source_file,"
        f" loaded_at FROM {schemas.QUARANTINE_TABLE} WHERE source_row IN (5, 8)"
        " ORDER BY source_row",
    )
    assert rows[0][:5] == ("5", "not-a-date", "105", "1", "0")
    assert rows[1][:5] == ("8", "2024-01-04 10:00:00", "108", "abc", "0")
    assert all(row[5] == str(path.resolve()) and row[6] is not None for row in rows)


def test_canonical_names_need_no_mapping_and_check_arrival_and_label(var_dir, tmp_path):
    path = tmp_path / "canonical.csv"
    path.write_text(
        "Transaction_ID,event_timestamp,customer_id,merchant_id,amount,arrival_timestamp,"
        "label_timestamp\n"
        "a,2024-01-01 10:00:00,c,m,1,2024-01-01 11:00:00,2024-01-08 10:00:00\n"
        "b,2024-01-01 10:00:00,c,m,1,2024-01-01 09:00:00,\n"
        "c,2024-01-01 10:00:00,c,m,1,soon,\n"
        "d,2024-01-01 10:00:00,c,m,1,,2023-12-31 00:00:00\n"
        "e,2024-01-01 10:00:00,c,m,1,,later\n"
    )
    summary = import_transactions(path, now=NOW)
    _assert_reconciles(summary)
    assert summary["rows_loaded"] == 1
    assert _quarantine(var_dir) == {
        2: "arrival_timestamp before event_timestamp",
        3: "unparseable arrival_timestamp",
        4: "label_timestamp before event_timestamp",
        5: "unparseable label_timestamp",
    }
    [row] = _query(
        var_dir, f"SELECT arrival_timestamp, label_timestamp FROM {schemas.TRANSACTIONS_TABLE}"
    )
    assert row == (datetime(2024, 1, 1, 11), datetime(2024, 1, 8, 10))


def test_typed_parquet_with_int_ids_and_tz_aware_timestamps(var_dir, tmp_path):
    paris = pa.timestamp("us", tz="Europe/Paris")
    utc = datetime(2024, 3, 1, 9, tzinfo=UTC)
    table = pa.table(
        {
            "TX_ID": pa.array([1, 2, 3, 2, 5, 6, 7, 8], pa.int64()),
            "TX_DATETIME": pa.array(
                [utc, utc, None, utc, datetime(2031, 1, 1, tzinfo=UTC), utc, utc, utc], paris
            ),
            "CUSTOMER_ID": pa.array([10.0, 20, 30, 20, 50, 60, math.nan, 80], pa.float64()),
            "TERMINAL_ID": pa.array([100, 200, 300, 200, 500, 600, 700, 800], pa.int32()),
            "TX_AMOUNT": pa.array([1.5, 2.0, 3.0, 2.0, 5.0, -6.0, 7.0, math.nan]),
            "TX_FRAUD": pa.array([True, False, None, False, False, False, False, False]),
            "UNUSED": pa.array(["x"] * 8),
        }
    )
    path = tmp_path / "tx.parquet"
    pq.write_table(table, path)
    summary = import_transactions(path, MAPPING, now=NOW)

    _assert_reconciles(summary)
    assert summary["rows_read"] == 8 and summary["rows_loaded"] == 2
    assert _quarantine(var_dir) == {
        3: "null event_timestamp",
        4: "duplicate transaction_id in file",
        5: "future event_timestamp",
        6: "negative amount",
        7: "null customer_id",  # NaN in a float id column is missing
        8: "non-finite amount",
    }
    loaded = _query(
        var_dir,
        f"SELECT transaction_id, event_timestamp, customer_id, merchant_id, amount, is_fraud"
        f" FROM {schemas.TRANSACTIONS_TABLE} ORDER BY transaction_id",
    )
    assert loaded == [
        ("1", datetime(2024, 3, 1, 9), "10", "100", 1.5, 1),
        ("2", datetime(2024, 3, 1, 9), "20", "200", 2.0, 0),
    ]


def test_parquet_nan_amount_and_text_timestamps(var_dir, tmp_path):
    table = pa.table(
        {
            "transaction_id": ["a", "b", "c"],
            "event_timestamp": ["2024-01-01T10:00:00-05:00", "2024-01-01 10:00:00", "x"],
            "customer_id": ["c", "c", "c"],
            "merchant_id": ["m", "m", "m"],
            "amount": [1.0, math.nan, 1.0],
        }
    )
    path = tmp_path / "tx.parquet"
    pq.write_table(table, path)
    summary = import_transactions(path, now=NOW)
    _assert_reconciles(summary)
    assert _quarantine(var_dir) == {2: "non-finite amount", 3: "unparseable event_timestamp"}
    assert _query(var_dir, f"SELECT event_timestamp FROM {schemas.TRANSACTIONS_TABLE}") == [
        (datetime(2024, 1, 1, 15),)
    ]


def test_reimport_quarantines_everything_as_already_loaded(var_dir, tmp_path):
    clean = _write_csv(tmp_path / "clean.csv", [r for r in CSV_ROWS if r[1] is None])
    first = import_transactions(clean, MAPPING, now=NOW)
    assert first["rows_loaded"] == 4 and first["rows_quarantined"] == 0

    again = import_transactions(clean, MAPPING, now=NOW)
    _assert_reconciles(again)
    assert again["rows_loaded"] == 0
    assert again["quarantine_reasons"] == {"duplicate transaction_id already loaded": 4}

    dirty = import_transactions(_write_csv(tmp_path / "tx.csv"), MAPPING, now=NOW)
    _assert_reconciles(dirty)
    assert dirty["rows_loaded"] == 0
    assert dirty["quarantine_reasons"]["duplicate transaction_id already loaded"] == 4
    assert _query(var_dir, f"SELECT count(*) FROM {schemas.TRANSACTIONS_TABLE}") == [(4,)]


def test_missing_mapped_column_names_it_and_shows_the_map_syntax(var_dir, tmp_path):
    path = _write_csv(tmp_path / "tx.csv")
    with pytest.raises(TransactionImportError) as err:
        import_transactions(path, {**MAPPING, "merchant_id": "MERCHANT"}, now=NOW)
    message = str(err.value)
    assert "MERCHANT" in message and "merchant_id" in message
    assert "--map canonical=source" in message and "--map transaction_id=TX_ID" in message
    assert "TERMINAL_ID" in message  # lists the file's columns

    # Unmapped, merchant_id is looked up by its own name, which this file lacks.
    with pytest.raises(TransactionImportError, match="required column 'merchant_id'") as err:
        import_transactions(path, {k: v for k, v in MAPPING.items() if k != "merchant_id"})
    assert "--map canonical=source" in str(err.value)


@pytest.mark.parametrize(
    ("items", "match"),
    [
        (["transaction_id"], "malformed mapping 'transaction_id'"),
        (["=TX_ID"], "malformed mapping"),
        (["transaction_id="], "malformed mapping"),
        (["txn=TX_ID"], "unknown canonical column 'txn'"),
        (["amount=A", "amount=B"], "mapped twice"),
    ],
)
def test_parse_mapping_errors_show_the_syntax(items, match):
    with pytest.raises(TransactionImportError, match=match) as err:
        parse_mapping(items)
    assert "--map canonical=source" in str(err.value)


def test_parse_mapping():
    assert parse_mapping([" transaction_id = TX_ID", "amount=TX=AMOUNT", "amount=TX=AMOUNT"]) == {
        "transaction_id": "TX_ID",
        "amount": "TX=AMOUNT",
    }
    assert parse_mapping([]) == {}


def test_bad_files_raise_clear_errors(var_dir, tmp_path):
    with pytest.raises(TransactionImportError, match="unknown file type '.xlsx'"):
        import_transactions(tmp_path / "tx.xlsx")
    with pytest.raises(TransactionImportError, match="no such file"):
        import_transactions(tmp_path / "missing.csv")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(TransactionImportError, match="cannot read the file"):
        import_transactions(garbage)


def test_failed_import_writes_nothing(var_dir, tmp_path):
    clean = _write_csv(tmp_path / "clean.csv", [r for r in CSV_ROWS if r[1] is None][:2])
    import_transactions(clean, MAPPING, now=NOW)
    count_sql = (
        f"SELECT (SELECT count(*) FROM {schemas.TRANSACTIONS_TABLE}),"
        f" (SELECT count(*) FROM {schemas.QUARANTINE_TABLE})"
    )
    before = _query(var_dir, count_sql)
    path = _write_csv(tmp_path / "tx.csv")

    # The valid rows are inserted first; the quarantine insert then fails with a DuckDB error.
    inserted = []

    class FailingQuarantine:
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            if sql.startswith(f"INSERT INTO {schemas.QUARANTINE_TABLE}"):
                inserted.append(self.con.execute(count_sql).fetchone())
                sql, args = "SELECT error('disk full (simulated)')", ()
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

    connect = warehouse.connect
    with pytest.MonkeyPatch.context() as patch:  # not `monkeypatch.undo()`: it would undo var_dir
        patch.setattr(warehouse, "connect", lambda *a, **k: FailingQuarantine(connect(*a, **k)))
        with pytest.raises(TransactionImportError, match="nothing written.*disk full"):
            import_transactions(path, MAPPING, now=NOW)
    assert inserted == [(before[0][0] + 2, before[0][1])]  # it failed midway
    assert _query(var_dir, count_sql) == before

    with pytest.raises(TransactionImportError):
        import_transactions(path, {**MAPPING, "amount": "NOPE"}, now=NOW)
    assert _query(var_dir, count_sql) == before

    summary = import_transactions(path, MAPPING, now=NOW)  # and the connection was released
    assert summary["rows_loaded"] == 2  # rows 1 and 2 of the first import are already loaded


def test_replace_rewrites_the_files_partition(var_dir, tmp_path):
    path = _write_csv(tmp_path / "day.csv")
    first = import_transactions(path, MAPPING, now=NOW, replace=True)
    snapshot = _query(var_dir, "select * exclude (loaded_at) from raw.transactions order by 1")
    second = import_transactions(path, MAPPING, now=NOW, replace=True)
    assert (second["rows_loaded"], second["rows_quarantined"]) == (
        first["rows_loaded"],
        first["rows_quarantined"],
    )
    assert (
        _query(var_dir, "select * exclude (loaded_at) from raw.transactions order by 1") == snapshot
    )
    assert _query(var_dir, "select count(*) from raw.transactions_quarantine") == [
        (first["rows_quarantined"],)
    ]
