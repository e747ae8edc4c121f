-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Customer spending windows just before each transaction (fraud features).
-- Grain: transaction; entity: customer; windows: 1h, 1d, 7d, 30d.
{%- set window_distinct = supports_window_distinct() %}

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
        {{ seconds_between("max(event_time) over w_all", "event_timestamp") }} as customer_seconds_since_last_tx
{%- if window_distinct %},
        count(distinct merchant_id) over w_1h as customer_merchant_distinct_1h,
        count(distinct merchant_id) over w_1d as customer_merchant_distinct_1d,
        count(distinct merchant_id) over w_7d as customer_merchant_distinct_7d,
        count(distinct merchant_id) over w_30d as customer_merchant_distinct_30d
{%- endif %}
    from stream
    window
    w_1h as (partition by entity_id order by event_timestamp
        range between {{ interval_of(3600, 'second') }} preceding and current row exclude group),
    w_1d as (partition by entity_id order by event_timestamp
        range between {{ interval_of(86400, 'second') }} preceding and current row exclude group),
    w_7d as (partition by entity_id order by event_timestamp
        range between {{ interval_of(604800, 'second') }} preceding and current row exclude group),
    w_30d as (partition by entity_id order by event_timestamp
        range between {{ interval_of(2592000, 'second') }} preceding and current row exclude group),
    w_all as (partition by entity_id order by event_timestamp
        range between unbounded preceding and current row exclude group)
),
{%- if window_distinct %}

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
{%- else %}

merchant_id_visits as (
    -- each distinct (merchant_id, time) of the entity and the next time of the same merchant_id
    select entity_id, event_timestamp,
        lead(event_timestamp) over (
            partition by entity_id, merchant_id order by event_timestamp
        ) as next_at
    from (
        select distinct entity_id, merchant_id, event_timestamp from events where merchant_id is not null
    ) as visits
),

step_changes as (
    -- +1 when an event starts to count, -1 when it stops (see skewless/dbtgen.py)
    select entity_id, ts,
        sum(n_customer_merchant_distinct_1h) as n_customer_merchant_distinct_1h,
        sum(n_customer_merchant_distinct_1d) as n_customer_merchant_distinct_1d,
        sum(n_customer_merchant_distinct_7d) as n_customer_merchant_distinct_7d,
        sum(n_customer_merchant_distinct_30d) as n_customer_merchant_distinct_30d
    from (
        select entity_id, event_timestamp + {{ interval_of(1, 'microsecond') }} as ts,
            1 as n_customer_merchant_distinct_1h, 1 as n_customer_merchant_distinct_1d, 1 as n_customer_merchant_distinct_7d, 1 as n_customer_merchant_distinct_30d
        from merchant_id_visits
        union all
        select entity_id, least(event_timestamp + {{ interval_of(3600, 'second') }}, coalesce(next_at, event_timestamp + {{ interval_of(3600, 'second') }})) + {{ interval_of(1, 'microsecond') }} as ts,
            -1 as n_customer_merchant_distinct_1h, 0 as n_customer_merchant_distinct_1d, 0 as n_customer_merchant_distinct_7d, 0 as n_customer_merchant_distinct_30d
        from merchant_id_visits
        union all
        select entity_id, least(event_timestamp + {{ interval_of(86400, 'second') }}, coalesce(next_at, event_timestamp + {{ interval_of(86400, 'second') }})) + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_customer_merchant_distinct_1h, -1 as n_customer_merchant_distinct_1d, 0 as n_customer_merchant_distinct_7d, 0 as n_customer_merchant_distinct_30d
        from merchant_id_visits
        union all
        select entity_id, least(event_timestamp + {{ interval_of(604800, 'second') }}, coalesce(next_at, event_timestamp + {{ interval_of(604800, 'second') }})) + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_customer_merchant_distinct_1h, 0 as n_customer_merchant_distinct_1d, -1 as n_customer_merchant_distinct_7d, 0 as n_customer_merchant_distinct_30d
        from merchant_id_visits
        union all
        select entity_id, least(event_timestamp + {{ interval_of(2592000, 'second') }}, coalesce(next_at, event_timestamp + {{ interval_of(2592000, 'second') }})) + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_customer_merchant_distinct_1h, 0 as n_customer_merchant_distinct_1d, 0 as n_customer_merchant_distinct_7d, -1 as n_customer_merchant_distinct_30d
        from merchant_id_visits
    ) as steps
    group by entity_id, ts
),

windowed_steps as (
    {{ running_sums_at('windowed', ['entity_id', 'event_timestamp', 'transaction_id', 'event_id', 'customer_tx_count_1h', 'customer_tx_count_1d', 'customer_tx_count_7d', 'customer_tx_count_30d', 'customer_amount_sum_1h', 'customer_amount_sum_1d', 'customer_amount_sum_7d', 'customer_amount_sum_30d', 'customer_amount_avg_1h', 'customer_amount_avg_1d', 'customer_amount_avg_7d', 'customer_amount_avg_30d', 'customer_seconds_since_last_tx'], 'step_changes', ['n_customer_merchant_distinct_1h', 'n_customer_merchant_distinct_1d', 'n_customer_merchant_distinct_7d', 'n_customer_merchant_distinct_30d']) }}
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
        cast(coalesce(w.n_customer_merchant_distinct_1h, 0) as bigint) as customer_merchant_distinct_1h,
        cast(coalesce(w.n_customer_merchant_distinct_1d, 0) as bigint) as customer_merchant_distinct_1d,
        cast(coalesce(w.n_customer_merchant_distinct_7d, 0) as bigint) as customer_merchant_distinct_7d,
        cast(coalesce(w.n_customer_merchant_distinct_30d, 0) as bigint) as customer_merchant_distinct_30d,
        w.customer_seconds_since_last_tx
    from windowed_steps as w
)
{%- endif %}

select *
from features
