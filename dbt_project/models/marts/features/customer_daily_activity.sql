-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Customer activity per day at midnight UTC (churn features).
-- Grain: daily; entity: customer; windows: 30d, 90d.

with events as (
    select customer_id as entity_id, event_timestamp, transaction_id, cast(amount as decimal(38, 10)) as amount
    from {{ ref('stg_raw__transactions') }}
),

cutoff as (
    select date_trunc('day', {{ features_as_of() }}) as last_midnight
),

days as (
    -- each day's events, keyed by the midnight after them: the first row that sees them
    select entity_id, date_trunc('day', event_timestamp) + {{ interval_of(1, 'day') }} as event_timestamp,
        count(transaction_id) as n,
        max(event_timestamp) as last_event_at,
        sum(amount) as sum_amount
    from events cross join cutoff
    where events.event_timestamp < cutoff.last_midnight
    group by entity_id, date_trunc('day', event_timestamp)
),

grid as (
    -- every midnight from the day after the entity's first event to the cutoff
    select entity_id, {{ day_series("min(event_timestamp)", "max(cutoff.last_midnight)") }} as event_timestamp
    from days cross join cutoff
    group by entity_id
),

dense as (
    select grid.entity_id, grid.event_timestamp,
        coalesce(day.n, 0) as n,
        day.last_event_at,
        coalesce(day.sum_amount, 0) as sum_amount
    from grid
    left join days as day
        on grid.entity_id = day.entity_id and grid.event_timestamp = day.event_timestamp
),

features as (
    select
        entity_id as customer_id,
        event_timestamp,
        cast(sum(n) over w_30d as bigint) as customer_daily_tx_count_30d,
        cast(sum(n) over w_90d as bigint) as customer_daily_tx_count_90d,
        cast(sum(sum_amount) over w_30d as {{ type_double() }}) as customer_daily_amount_sum_30d,
        cast(sum(sum_amount) over w_90d as {{ type_double() }}) as customer_daily_amount_sum_90d,
        {{ seconds_between("max(last_event_at) over w_all", "event_timestamp") }} as customer_daily_seconds_since_last_tx
    from dense
    window
    w_30d as (partition by entity_id order by event_timestamp
        rows between 29 preceding and current row),
    w_90d as (partition by entity_id order by event_timestamp
        rows between 89 preceding and current row),
    w_all as (partition by entity_id order by event_timestamp
        rows between unbounded preceding and current row)
)

select *,
    cast(customer_daily_tx_count_30d as {{ type_double() }}) / nullif(customer_daily_tx_count_90d, 0) * 3.0 as customer_daily_tx_trend
from features
