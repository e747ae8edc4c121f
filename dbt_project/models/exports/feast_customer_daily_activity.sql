-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- The offline source of the Feast feature view customer_daily_activity (DuckDB only).
{{ config(enabled=target.type == 'duckdb') }}

select * replace (event_timestamp::timestamptz as event_timestamp)
from {{ ref('customer_daily_activity') }}
