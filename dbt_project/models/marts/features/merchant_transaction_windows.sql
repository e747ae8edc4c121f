-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Merchant volume and known fraud risk just before each transaction (label delay).
-- Grain: transaction; entity: merchant; windows: 1d, 7d, 30d.

with events as (
    select merchant_id as entity_id, event_timestamp, transaction_id, label_timestamp, is_fraud
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
        event_timestamp as event_time, is_fraud
    from events
    union all
    select entity_id, event_timestamp, null, null, null, null as is_fraud
    from query_points
),

windowed as (
    select
        entity_id, event_timestamp, transaction_id, event_id,
        count(event_id) over w_1d as merchant_tx_count_1d,
        count(event_id) over w_7d as merchant_tx_count_7d,
        count(event_id) over w_30d as merchant_tx_count_30d
    from stream
    window
    w_1d as (partition by entity_id order by event_timestamp
        range between to_seconds(86400) preceding and current row exclude group),
    w_7d as (partition by entity_id order by event_timestamp
        range between to_seconds(604800) preceding and current row exclude group),
    w_30d as (partition by entity_id order by event_timestamp
        range between to_seconds(2592000) preceding and current row exclude group)
),

labels as (
    select entity_id, event_timestamp, label_timestamp, is_fraud
    from events
    where is_fraud is not null
),

label_steps as (
    -- +1 when a label becomes usable, -1 when its event leaves the window (see skewless/dbtgen.py)
    select entity_id, ts,
        sum(n_merchant_fraud_rate_1d) as n_merchant_fraud_rate_1d,
        sum(y_merchant_fraud_rate_1d) as y_merchant_fraud_rate_1d,
        sum(n_merchant_fraud_rate_7d) as n_merchant_fraud_rate_7d,
        sum(y_merchant_fraud_rate_7d) as y_merchant_fraud_rate_7d,
        sum(n_merchant_fraud_rate_30d) as n_merchant_fraud_rate_30d,
        sum(y_merchant_fraud_rate_30d) as y_merchant_fraud_rate_30d
    from (
        select entity_id, greatest(label_timestamp, event_timestamp + to_microseconds(1)) as ts,
            (label_timestamp <= event_timestamp + to_seconds(86400))::int as n_merchant_fraud_rate_1d,
            case when label_timestamp <= event_timestamp + to_seconds(86400) then is_fraud::double else 0 end as y_merchant_fraud_rate_1d,
            (label_timestamp <= event_timestamp + to_seconds(604800))::int as n_merchant_fraud_rate_7d,
            case when label_timestamp <= event_timestamp + to_seconds(604800) then is_fraud::double else 0 end as y_merchant_fraud_rate_7d,
            (label_timestamp <= event_timestamp + to_seconds(2592000))::int as n_merchant_fraud_rate_30d,
            case when label_timestamp <= event_timestamp + to_seconds(2592000) then is_fraud::double else 0 end as y_merchant_fraud_rate_30d
        from labels
        union all
        select entity_id, event_timestamp + to_seconds(86400) + to_microseconds(1) as ts, -1 as n_merchant_fraud_rate_1d, -is_fraud::double as y_merchant_fraud_rate_1d, 0 as n_merchant_fraud_rate_7d, 0 as y_merchant_fraud_rate_7d, 0 as n_merchant_fraud_rate_30d, 0 as y_merchant_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + to_seconds(86400)
        union all
        select entity_id, event_timestamp + to_seconds(604800) + to_microseconds(1) as ts, 0 as n_merchant_fraud_rate_1d, 0 as y_merchant_fraud_rate_1d, -1 as n_merchant_fraud_rate_7d, -is_fraud::double as y_merchant_fraud_rate_7d, 0 as n_merchant_fraud_rate_30d, 0 as y_merchant_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + to_seconds(604800)
        union all
        select entity_id, event_timestamp + to_seconds(2592000) + to_microseconds(1) as ts, 0 as n_merchant_fraud_rate_1d, 0 as y_merchant_fraud_rate_1d, 0 as n_merchant_fraud_rate_7d, 0 as y_merchant_fraud_rate_7d, -1 as n_merchant_fraud_rate_30d, -is_fraud::double as y_merchant_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + to_seconds(2592000)
    ) as steps
    group by entity_id, ts
),

label_running as (
    select entity_id, ts,
        sum(n_merchant_fraud_rate_1d) over running as n_merchant_fraud_rate_1d,
        sum(y_merchant_fraud_rate_1d) over running as y_merchant_fraud_rate_1d,
        sum(n_merchant_fraud_rate_7d) over running as n_merchant_fraud_rate_7d,
        sum(y_merchant_fraud_rate_7d) over running as y_merchant_fraud_rate_7d,
        sum(n_merchant_fraud_rate_30d) over running as n_merchant_fraud_rate_30d,
        sum(y_merchant_fraud_rate_30d) over running as y_merchant_fraud_rate_30d
    from label_steps
    window running as (partition by entity_id order by ts rows unbounded preceding)
),

features as (
    select
        w.entity_id as merchant_id,
        w.event_timestamp,
        w.transaction_id,
        w.transaction_id is null as is_snapshot,
        w.merchant_tx_count_1d,
        w.merchant_tx_count_7d,
        w.merchant_tx_count_30d,
        labels_at_t.y_merchant_fraud_rate_1d / nullif(labels_at_t.n_merchant_fraud_rate_1d, 0) as merchant_fraud_rate_1d,
        labels_at_t.y_merchant_fraud_rate_7d / nullif(labels_at_t.n_merchant_fraud_rate_7d, 0) as merchant_fraud_rate_7d,
        labels_at_t.y_merchant_fraud_rate_30d / nullif(labels_at_t.n_merchant_fraud_rate_30d, 0) as merchant_fraud_rate_30d
    from windowed as w
    asof left join label_running as labels_at_t
    on w.entity_id = labels_at_t.entity_id and w.event_timestamp >= labels_at_t.ts
)

select *
from features
