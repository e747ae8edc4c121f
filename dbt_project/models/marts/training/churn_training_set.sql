-- One row per active customer and day (midnight UTC): the customer's activity features and the label
-- "no transaction in the next churn_horizon_days days". Only days whose horizon lies within the data
-- (the label is observable) and customers active in the previous 90 days are kept.

with daily as (
    select * from {{ ref('customer_daily_activity') }}
),

events as (
    select customer_id, event_timestamp from {{ ref('stg_raw__transactions') }}
),

observed as (
    select max(event_timestamp) as last_event_at from events
),

next_events as (
    select daily.customer_id, daily.event_timestamp, events.event_timestamp as next_event_at
    from daily
    asof left join events
        on daily.customer_id = events.customer_id
        and daily.event_timestamp <= events.event_timestamp
)

select
    daily.*,
    (
        next_events.next_event_at is null
        or next_events.next_event_at
        >= daily.event_timestamp + to_days({{ var('churn_horizon_days') }})
    ) as is_churned_30d
from daily
inner join next_events
    on daily.customer_id = next_events.customer_id
    and daily.event_timestamp = next_events.event_timestamp
cross join observed
where
    daily.customer_daily_tx_count_90d > 0
    and daily.event_timestamp + to_days({{ var('churn_horizon_days') }}) <= observed.last_event_at
