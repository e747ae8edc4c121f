-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- The offline source of the Feast feature view merchant_transaction_windows (DuckDB only).
{{ config(enabled=target.type == 'duckdb') }}

select * replace (event_timestamp::timestamptz as event_timestamp)
from {{ ref('merchant_transaction_windows') }}
