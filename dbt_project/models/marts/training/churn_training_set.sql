-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- One row per customer and day (midnight UTC) of customer_daily_activity, for entities with an
-- event in the previous 90d, labeled is_churned_30d: no event within the next
-- 30 days. Only days whose horizon lies within the data are kept.

with daily as (
    select * from {{ ref('customer_daily_activity') }}
),

events as (
    select customer_id as entity_id, event_timestamp from {{ ref('stg_raw__transactions') }}
),

observed as (
    select max(event_timestamp) as last_event_at from events
),

kept as (
    -- the training rows, before their label: active entities, horizon within the data
    select daily.*
    from daily
    cross join observed
    where
        daily.customer_daily_tx_count_90d > 0
        and daily.event_timestamp + {{ interval_of(2592000, 'second') }} <= observed.last_event_at
),

days as (
    select customer_id as entity_id, event_timestamp from kept
),

next_events as (
    {{ next_event_at('days', 'events') }}
)

select
    kept.*,
    (
        next_events.next_event_at is null
        or next_events.next_event_at >= kept.event_timestamp + {{ interval_of(2592000, 'second') }}
    ) as is_churned_30d
from kept
inner join next_events
    on kept.customer_id = next_events.entity_id
    and kept.event_timestamp = next_events.event_timestamp
