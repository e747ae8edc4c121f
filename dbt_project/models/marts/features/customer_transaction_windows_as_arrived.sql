-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Customer spending windows just before each transaction (fraud features).
-- Grain: transaction; entity: customer; windows: 1h, 1d, 7d, 30d.
-- Arrival-aware: only the events that had arrived by each scoring.
with truth as (
    select * from {{ ref('customer_transaction_windows') }}
),

events as (
    select customer_id as entity_id, transaction_id, event_timestamp, arrival_timestamp, label_timestamp, amount, merchant_id
    from {{ ref('stg_raw__transactions') }}
),

ordered as (
    -- each transaction with the latest arrival among its entity's earlier events
    select
        *,
        max(arrival_timestamp) over (
            partition by entity_id order by event_timestamp
            range between unbounded preceding and {{ before_peers() }}
        ) as latest_earlier_arrival
    from events
),

overtaken as (
    -- scored before an earlier event of its entity had arrived
    select entity_id, transaction_id, event_timestamp, arrival_timestamp
    from ordered
    where latest_earlier_arrival > arrival_timestamp
),

recomputed as (
    select
        r.transaction_id,
        count(e.transaction_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 300) }} - {{ interval_of(3600, 'second') }} and e.event_timestamp < r.event_timestamp) as customer_tx_count_1h,
        count(e.transaction_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(86400, 'second') }} and e.event_timestamp < r.event_timestamp) as customer_tx_count_1d,
        count(e.transaction_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.event_timestamp < r.event_timestamp) as customer_tx_count_7d,
        count(e.transaction_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(2592000, 'second') }} and e.event_timestamp < r.event_timestamp) as customer_tx_count_30d,
        coalesce(cast(sum(cast(e.amount as decimal(38, 10))) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 300) }} - {{ interval_of(3600, 'second') }} and e.event_timestamp < r.event_timestamp) as {{ type_double() }}), 0) as customer_amount_sum_1h,
        coalesce(cast(sum(cast(e.amount as decimal(38, 10))) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(86400, 'second') }} and e.event_timestamp < r.event_timestamp) as {{ type_double() }}), 0) as customer_amount_sum_1d,
        coalesce(cast(sum(cast(e.amount as decimal(38, 10))) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.event_timestamp < r.event_timestamp) as {{ type_double() }}), 0) as customer_amount_sum_7d,
        coalesce(cast(sum(cast(e.amount as decimal(38, 10))) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(2592000, 'second') }} and e.event_timestamp < r.event_timestamp) as {{ type_double() }}), 0) as customer_amount_sum_30d,
        cast(sum(cast(e.amount as decimal(38, 10))) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 300) }} - {{ interval_of(3600, 'second') }} and e.event_timestamp < r.event_timestamp) as {{ type_double() }}) / nullif(count(e.amount) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 300) }} - {{ interval_of(3600, 'second') }} and e.event_timestamp < r.event_timestamp), 0) as customer_amount_avg_1h,
        cast(sum(cast(e.amount as decimal(38, 10))) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(86400, 'second') }} and e.event_timestamp < r.event_timestamp) as {{ type_double() }}) / nullif(count(e.amount) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(86400, 'second') }} and e.event_timestamp < r.event_timestamp), 0) as customer_amount_avg_1d,
        cast(sum(cast(e.amount as decimal(38, 10))) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.event_timestamp < r.event_timestamp) as {{ type_double() }}) / nullif(count(e.amount) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.event_timestamp < r.event_timestamp), 0) as customer_amount_avg_7d,
        cast(sum(cast(e.amount as decimal(38, 10))) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(2592000, 'second') }} and e.event_timestamp < r.event_timestamp) as {{ type_double() }}) / nullif(count(e.amount) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(2592000, 'second') }} and e.event_timestamp < r.event_timestamp), 0) as customer_amount_avg_30d,
        count(distinct e.merchant_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 300) }} - {{ interval_of(3600, 'second') }} and e.event_timestamp < r.event_timestamp) as customer_merchant_distinct_1h,
        count(distinct e.merchant_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(86400, 'second') }} and e.event_timestamp < r.event_timestamp) as customer_merchant_distinct_1d,
        count(distinct e.merchant_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.event_timestamp < r.event_timestamp) as customer_merchant_distinct_7d,
        count(distinct e.merchant_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(2592000, 'second') }} and e.event_timestamp < r.event_timestamp) as customer_merchant_distinct_30d,
        {{ seconds_between("max(e.event_timestamp)", "r.event_timestamp") }} as customer_seconds_since_last_tx
    from overtaken as r
    left join events as e
        on e.entity_id = r.entity_id
        and e.event_timestamp < r.event_timestamp
        and e.arrival_timestamp <= r.arrival_timestamp
    group by r.transaction_id, r.event_timestamp
),

features as (
    select
        truth.customer_id,
        truth.event_timestamp,
        truth.transaction_id,
        truth.is_snapshot,
        case when recomputed.transaction_id is null then truth.customer_tx_count_1h else recomputed.customer_tx_count_1h end as customer_tx_count_1h,
        case when recomputed.transaction_id is null then truth.customer_tx_count_1d else recomputed.customer_tx_count_1d end as customer_tx_count_1d,
        case when recomputed.transaction_id is null then truth.customer_tx_count_7d else recomputed.customer_tx_count_7d end as customer_tx_count_7d,
        case when recomputed.transaction_id is null then truth.customer_tx_count_30d else recomputed.customer_tx_count_30d end as customer_tx_count_30d,
        case when recomputed.transaction_id is null then truth.customer_amount_sum_1h else recomputed.customer_amount_sum_1h end as customer_amount_sum_1h,
        case when recomputed.transaction_id is null then truth.customer_amount_sum_1d else recomputed.customer_amount_sum_1d end as customer_amount_sum_1d,
        case when recomputed.transaction_id is null then truth.customer_amount_sum_7d else recomputed.customer_amount_sum_7d end as customer_amount_sum_7d,
        case when recomputed.transaction_id is null then truth.customer_amount_sum_30d else recomputed.customer_amount_sum_30d end as customer_amount_sum_30d,
        case when recomputed.transaction_id is null then truth.customer_amount_avg_1h else recomputed.customer_amount_avg_1h end as customer_amount_avg_1h,
        case when recomputed.transaction_id is null then truth.customer_amount_avg_1d else recomputed.customer_amount_avg_1d end as customer_amount_avg_1d,
        case when recomputed.transaction_id is null then truth.customer_amount_avg_7d else recomputed.customer_amount_avg_7d end as customer_amount_avg_7d,
        case when recomputed.transaction_id is null then truth.customer_amount_avg_30d else recomputed.customer_amount_avg_30d end as customer_amount_avg_30d,
        case when recomputed.transaction_id is null then truth.customer_merchant_distinct_1h else recomputed.customer_merchant_distinct_1h end as customer_merchant_distinct_1h,
        case when recomputed.transaction_id is null then truth.customer_merchant_distinct_1d else recomputed.customer_merchant_distinct_1d end as customer_merchant_distinct_1d,
        case when recomputed.transaction_id is null then truth.customer_merchant_distinct_7d else recomputed.customer_merchant_distinct_7d end as customer_merchant_distinct_7d,
        case when recomputed.transaction_id is null then truth.customer_merchant_distinct_30d else recomputed.customer_merchant_distinct_30d end as customer_merchant_distinct_30d,
        case when recomputed.transaction_id is null then truth.customer_seconds_since_last_tx else recomputed.customer_seconds_since_last_tx end as customer_seconds_since_last_tx
    from truth
    left join recomputed
        on truth.transaction_id = recomputed.transaction_id
)

select *
from features
