"""Landing a day's drop file: idempotent per day, columns mapped by SKEWLESS_DROP_MAP."""

from __future__ import annotations

from datetime import date

import pytest

from skewless import importer, ingest, settings, warehouse

HANDBOOK = "TX_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"
ROWS = "1,2024-01-01 10:00:00,101,201,12.5,0\n2,2024-01-01 12:00:00,102,202,30,1\n"
DROP_MAP = (
    "transaction_id=TX_ID,event_timestamp=TX_DATETIME,customer_id=CUSTOMER_ID,"
    "merchant_id=TERMINAL_ID,amount=TX_AMOUNT,is_fraud=TX_FRAUD"
)
DAY = date(2024, 1, 1)


def _drop(cfg, text: str) -> None:
    cfg.drop_dir.mkdir(parents=True, exist_ok=True)
    (cfg.drop_dir / f"transactions_{DAY.isoformat()}.csv").write_text(text)


def test_the_drop_map_maps_the_files_columns_like_import_map(var_dir, monkeypatch):
    monkeypatch.setenv("SKEWLESS_DROP_MAP", DROP_MAP)
    cfg = settings.load()
    _drop(cfg, HANDBOOK + ROWS)
    first = ingest.land_day(DAY, cfg=cfg)
    again = ingest.land_day(DAY, cfg=cfg)  # a re-run rewrites the day
    assert first["rows_loaded"] == again["rows_loaded"] == 2
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        rows = con.execute(
            "select transaction_id, merchant_id, amount from raw.transactions order by 1"
        ).fetchall()
    finally:
        con.close()
    assert rows == [("1", "201", 12.5), ("2", "202", 30.0)]


def test_a_mapped_column_missing_from_the_file_is_named(var_dir, monkeypatch):
    monkeypatch.setenv("SKEWLESS_DROP_MAP", DROP_MAP)
    cfg = settings.load()
    _drop(cfg, HANDBOOK.replace("TERMINAL_ID", "TERMINAL") + ROWS)
    with pytest.raises(importer.TransactionImportError, match="TERMINAL_ID"):
        ingest.land_day(DAY, cfg=cfg)


def test_an_unknown_canonical_name_in_the_drop_map_is_refused(var_dir, monkeypatch):
    monkeypatch.setenv("SKEWLESS_DROP_MAP", "terminal=TERMINAL_ID")
    cfg = settings.load()
    _drop(cfg, HANDBOOK + ROWS)
    with pytest.raises(
        importer.TransactionImportError, match="unknown canonical column 'terminal'"
    ):
        ingest.land_day(DAY, cfg=cfg)


def test_without_data_for_the_day_the_error_names_the_expected_file(var_dir):
    with pytest.raises(FileNotFoundError, match=r"no data landed for 2024-01-01: expected .*"):
        ingest.land_day(DAY)
