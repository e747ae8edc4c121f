-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Merchant volume, and fraud rates of the labels known at t (label delay aware).
-- Grain: transaction; entity: merchant; windows: 1d, 7d, 30d.
-- Arrival-aware: only the events that had arrived by each scoring.
with truth as (
    select * from {{ ref('merchant_transaction_windows') }}
),

events as (
    select merchant_id as entity_id, transaction_id, event_timestamp, arrival_timestamp, label_timestamp, is_fraud
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
        count(e.transaction_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(86400, 'second') }} and e.event_timestamp < r.event_timestamp) as merchant_tx_count_1d,
        count(e.transaction_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.event_timestamp < r.event_timestamp) as merchant_tx_count_7d,
        count(e.transaction_id) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(2592000, 'second') }} and e.event_timestamp < r.event_timestamp) as merchant_tx_count_30d,
        avg(cast(e.is_fraud as {{ type_double() }})) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(691200, 'second') }} and e.event_timestamp < {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.is_fraud is not null and e.label_timestamp <= r.event_timestamp) as merchant_fraud_risk_1d,
        avg(cast(e.is_fraud as {{ type_double() }})) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(1209600, 'second') }} and e.event_timestamp < {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.is_fraud is not null and e.label_timestamp <= r.event_timestamp) as merchant_fraud_risk_7d,
        avg(cast(e.is_fraud as {{ type_double() }})) filter (where e.event_timestamp >= {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(3196800, 'second') }} and e.event_timestamp < {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(604800, 'second') }} and e.is_fraud is not null and e.label_timestamp <= r.event_timestamp) as merchant_fraud_risk_30d,
        avg(cast(e.is_fraud as {{ type_double() }})) filter (where e.label_timestamp <= e.event_timestamp + {{ interval_of(2592000, 'second') }} and e.label_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(86400, 'second') }} and e.label_timestamp <= r.event_timestamp and e.is_fraud is not null) as merchant_recent_label_fraud_rate_1d,
        avg(cast(e.is_fraud as {{ type_double() }})) filter (where e.label_timestamp <= e.event_timestamp + {{ interval_of(2592000, 'second') }} and e.label_timestamp >= {{ floor_to("r.event_timestamp", 3600) }} - {{ interval_of(604800, 'second') }} and e.label_timestamp <= r.event_timestamp and e.is_fraud is not null) as merchant_recent_label_fraud_rate_7d,
        avg(cast(e.is_fraud as {{ type_double() }})) filter (where e.label_timestamp <= e.event_timestamp + {{ interval_of(2592000, 'second') }} and e.label_timestamp >= {{ floor_to("r.event_timestamp", 86400) }} - {{ interval_of(2592000, 'second') }} and e.label_timestamp <= r.event_timestamp and e.is_fraud is not null) as merchant_recent_label_fraud_rate_30d
    from overtaken as r
    left join events as e
        on e.entity_id = r.entity_id
        and e.event_timestamp < r.event_timestamp
        and e.arrival_timestamp <= r.arrival_timestamp
    group by r.transaction_id, r.event_timestamp
),

features as (
    select
        truth.merchant_id,
        truth.event_timestamp,
        truth.transaction_id,
        truth.is_snapshot,
        case when recomputed.transaction_id is null then truth.merchant_tx_count_1d else recomputed.merchant_tx_count_1d end as merchant_tx_count_1d,
        case when recomputed.transaction_id is null then truth.merchant_tx_count_7d else recomputed.merchant_tx_count_7d end as merchant_tx_count_7d,
        case when recomputed.transaction_id is null then truth.merchant_tx_count_30d else recomputed.merchant_tx_count_30d end as merchant_tx_count_30d,
        case when recomputed.transaction_id is null then truth.merchant_fraud_risk_1d else recomputed.merchant_fraud_risk_1d end as merchant_fraud_risk_1d,
        case when recomputed.transaction_id is null then truth.merchant_fraud_risk_7d else recomputed.merchant_fraud_risk_7d end as merchant_fraud_risk_7d,
        case when recomputed.transaction_id is null then truth.merchant_fraud_risk_30d else recomputed.merchant_fraud_risk_30d end as merchant_fraud_risk_30d,
        case when recomputed.transaction_id is null then truth.merchant_recent_label_fraud_rate_1d else recomputed.merchant_recent_label_fraud_rate_1d end as merchant_recent_label_fraud_rate_1d,
        case when recomputed.transaction_id is null then truth.merchant_recent_label_fraud_rate_7d else recomputed.merchant_recent_label_fraud_rate_7d end as merchant_recent_label_fraud_rate_7d,
        case when recomputed.transaction_id is null then truth.merchant_recent_label_fraud_rate_30d else recomputed.merchant_recent_label_fraud_rate_30d end as merchant_recent_label_fraud_rate_30d
    from truth
    left join recomputed
        on truth.transaction_id = recomputed.transaction_id
)

select *
from features
