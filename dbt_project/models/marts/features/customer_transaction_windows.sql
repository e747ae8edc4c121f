-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Customer spending windows just before each transaction (fraud features).
-- Grain: transaction; entity: customer; windows: 1h, 1d, 7d, 30d.

with events as (
    select customer_id as entity_id, event_timestamp, transaction_id, label_timestamp, amount, merchant_id
    from {{ ref('stg_raw__transactions') }}
),

cutoff as (
    select {{ features_as_of() }} as snapshot_at
),

query_points as (
    -- one snapshot row per entity at the cutoff: the state a batch materialization serves
    select distinct events.entity_id, cutoff.snapshot_at as event_timestamp
    from events cross join cutoff
    where events.event_timestamp < cutoff.snapshot_at
),

stream as (
    select entity_id, event_timestamp, transaction_id, transaction_id as event_id,
        event_timestamp as event_time, amount, merchant_id
    from events
    union all
    select entity_id, event_timestamp, null, null, null, null as amount, null as merchant_id
    from query_points
),

windowed as (
    select
        entity_id, event_timestamp, transaction_id, event_id,
        count(event_id) over w_1h as customer_tx_count_1h,
        count(event_id) over w_1d as customer_tx_count_1d,
        count(event_id) over w_7d as customer_tx_count_7d,
        count(event_id) over w_30d as customer_tx_count_30d,
        coalesce(sum(amount) over w_1h, 0) as customer_amount_sum_1h,
        coalesce(sum(amount) over w_1d, 0) as customer_amount_sum_1d,
        coalesce(sum(amount) over w_7d, 0) as customer_amount_sum_7d,
        coalesce(sum(amount) over w_30d, 0) as customer_amount_sum_30d,
        avg(amount) over w_1h as customer_amount_avg_1h,
        avg(amount) over w_1d as customer_amount_avg_1d,
        avg(amount) over w_7d as customer_amount_avg_7d,
        avg(amount) over w_30d as customer_amount_avg_30d,
        count(distinct merchant_id) over w_1h as customer_merchant_distinct_1h,
        count(distinct merchant_id) over w_1d as customer_merchant_distinct_1d,
        count(distinct merchant_id) over w_7d as customer_merchant_distinct_7d,
        count(distinct merchant_id) over w_30d as customer_merchant_distinct_30d,
        date_diff('microsecond', max(event_time) over w_all, event_timestamp) / 1e6 as customer_seconds_since_last_tx
    from stream
    window
    w_1h as (partition by entity_id order by event_timestamp
        range between to_seconds(3600) preceding and current row exclude group),
    w_1d as (partition by entity_id order by event_timestamp
        range between to_seconds(86400) preceding and current row exclude group),
    w_7d as (partition by entity_id order by event_timestamp
        range between to_seconds(604800) preceding and current row exclude group),
    w_30d as (partition by entity_id order by event_timestamp
        range between to_seconds(2592000) preceding and current row exclude group),
    w_all as (partition by entity_id order by event_timestamp
        range between unbounded preceding and current row exclude group)
),

features as (
    select
        w.entity_id as customer_id,
        w.event_timestamp,
        w.transaction_id,
        w.transaction_id is null as is_snapshot,
        w.customer_tx_count_1h,
        w.customer_tx_count_1d,
        w.customer_tx_count_7d,
        w.customer_tx_count_30d,
        w.customer_amount_sum_1h,
        w.customer_amount_sum_1d,
        w.customer_amount_sum_7d,
        w.customer_amount_sum_30d,
        w.customer_amount_avg_1h,
        w.customer_amount_avg_1d,
        w.customer_amount_avg_7d,
        w.customer_amount_avg_30d,
        w.customer_merchant_distinct_1h,
        w.customer_merchant_distinct_1d,
        w.customer_merchant_distinct_7d,
        w.customer_merchant_distinct_30d,
        w.customer_seconds_since_last_tx
    from windowed as w
)

select *
from features
