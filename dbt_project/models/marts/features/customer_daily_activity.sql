-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Customer activity per day at midnight UTC (churn features).
-- Grain: daily; entity: customer; windows: 30d, 90d.

with events as (
    select customer_id as entity_id, event_timestamp, transaction_id, label_timestamp, amount
    from {{ ref('stg_raw__transactions') }}
),

cutoff as (
    select {{ features_as_of() }} as snapshot_at
),

query_points as (
    -- every midnight from the day after the entity's first event to the cutoff
    select entity_id, unnest(generate_series(
        date_trunc('day', min(event_timestamp)) + interval 1 day,
        date_trunc('day', any_value(cutoff.snapshot_at)),
        interval 1 day
    )) as event_timestamp
    from events cross join cutoff
    where events.event_timestamp < cutoff.snapshot_at
    group by entity_id
),

stream as (
    select entity_id, event_timestamp, transaction_id, transaction_id as event_id,
        event_timestamp as event_time, amount
    from events
    union all
    select entity_id, event_timestamp, null, null, null, null as amount
    from query_points
),

windowed as (
    select
        entity_id, event_timestamp, transaction_id, event_id,
        count(event_id) over w_30d as customer_daily_tx_count_30d,
        count(event_id) over w_90d as customer_daily_tx_count_90d,
        coalesce(sum(amount) over w_30d, 0) as customer_daily_amount_sum_30d,
        coalesce(sum(amount) over w_90d, 0) as customer_daily_amount_sum_90d,
        date_diff('microsecond', max(event_time) over w_all, event_timestamp) / 1e6 as customer_daily_seconds_since_last_tx
    from stream
    window
    w_30d as (partition by entity_id order by event_timestamp
        range between to_seconds(2592000) preceding and current row exclude group),
    w_90d as (partition by entity_id order by event_timestamp
        range between to_seconds(7776000) preceding and current row exclude group),
    w_all as (partition by entity_id order by event_timestamp
        range between unbounded preceding and current row exclude group)
),

features as (
    select
        w.entity_id as customer_id,
        w.event_timestamp,
        w.customer_daily_tx_count_30d,
        w.customer_daily_tx_count_90d,
        w.customer_daily_amount_sum_30d,
        w.customer_daily_amount_sum_90d,
        w.customer_daily_seconds_since_last_tx
    from windowed as w
    where w.event_id is null
)

select *,
    customer_daily_tx_count_30d / nullif(customer_daily_tx_count_90d, 0) * 3.0 as customer_daily_tx_trend
from features
