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

label_steps_1d as (
    -- a label counts at t when label_timestamp <= t and t - 1d <= event_timestamp < t:
    -- +1 from max(label, event) (inclusive when the label came later), -1 after event + 1d
    select entity_id, ts, inclusive, sum(n) as n, sum(y) as y
    from (
        select entity_id, greatest(label_timestamp, event_timestamp) as ts,
            label_timestamp > event_timestamp as inclusive, 1 as n, is_fraud::double as y
        from labels where label_timestamp <= event_timestamp + to_seconds(86400)
        union all
        select entity_id, event_timestamp + to_seconds(86400), false, -1, -(is_fraud::double)
        from labels where label_timestamp <= event_timestamp + to_seconds(86400)
    ) as steps
    group by entity_id, ts, inclusive
),

label_running_1d as (
    select entity_id, ts, inclusive,
        sum(n) over running as n,
        sum(y) over running as y
    from label_steps_1d
    window running as (partition by entity_id, inclusive order by ts rows unbounded preceding)
),

label_steps_7d as (
    -- a label counts at t when label_timestamp <= t and t - 7d <= event_timestamp < t:
    -- +1 from max(label, event) (inclusive when the label came later), -1 after event + 7d
    select entity_id, ts, inclusive, sum(n) as n, sum(y) as y
    from (
        select entity_id, greatest(label_timestamp, event_timestamp) as ts,
            label_timestamp > event_timestamp as inclusive, 1 as n, is_fraud::double as y
        from labels where label_timestamp <= event_timestamp + to_seconds(604800)
        union all
        select entity_id, event_timestamp + to_seconds(604800), false, -1, -(is_fraud::double)
        from labels where label_timestamp <= event_timestamp + to_seconds(604800)
    ) as steps
    group by entity_id, ts, inclusive
),

label_running_7d as (
    select entity_id, ts, inclusive,
        sum(n) over running as n,
        sum(y) over running as y
    from label_steps_7d
    window running as (partition by entity_id, inclusive order by ts rows unbounded preceding)
),

label_steps_30d as (
    -- a label counts at t when label_timestamp <= t and t - 30d <= event_timestamp < t:
    -- +1 from max(label, event) (inclusive when the label came later), -1 after event + 30d
    select entity_id, ts, inclusive, sum(n) as n, sum(y) as y
    from (
        select entity_id, greatest(label_timestamp, event_timestamp) as ts,
            label_timestamp > event_timestamp as inclusive, 1 as n, is_fraud::double as y
        from labels where label_timestamp <= event_timestamp + to_seconds(2592000)
        union all
        select entity_id, event_timestamp + to_seconds(2592000), false, -1, -(is_fraud::double)
        from labels where label_timestamp <= event_timestamp + to_seconds(2592000)
    ) as steps
    group by entity_id, ts, inclusive
),

label_running_30d as (
    select entity_id, ts, inclusive,
        sum(n) over running as n,
        sum(y) over running as y
    from label_steps_30d
    window running as (partition by entity_id, inclusive order by ts rows unbounded preceding)
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
        (coalesce(in_1d.y, 0) + coalesce(ex_1d.y, 0)) / nullif((coalesce(in_1d.n, 0) + coalesce(ex_1d.n, 0)), 0) as merchant_fraud_rate_1d,
        (coalesce(in_7d.y, 0) + coalesce(ex_7d.y, 0)) / nullif((coalesce(in_7d.n, 0) + coalesce(ex_7d.n, 0)), 0) as merchant_fraud_rate_7d,
        (coalesce(in_30d.y, 0) + coalesce(ex_30d.y, 0)) / nullif((coalesce(in_30d.n, 0) + coalesce(ex_30d.n, 0)), 0) as merchant_fraud_rate_30d
    from windowed as w
    asof left join (select * from label_running_1d where inclusive) as in_1d
    on w.entity_id = in_1d.entity_id and w.event_timestamp >= in_1d.ts
    asof left join (select * from label_running_1d where not inclusive) as ex_1d
    on w.entity_id = ex_1d.entity_id and w.event_timestamp > ex_1d.ts
    asof left join (select * from label_running_7d where inclusive) as in_7d
    on w.entity_id = in_7d.entity_id and w.event_timestamp >= in_7d.ts
    asof left join (select * from label_running_7d where not inclusive) as ex_7d
    on w.entity_id = ex_7d.entity_id and w.event_timestamp > ex_7d.ts
    asof left join (select * from label_running_30d where inclusive) as in_30d
    on w.entity_id = in_30d.entity_id and w.event_timestamp >= in_30d.ts
    asof left join (select * from label_running_30d where not inclusive) as ex_30d
    on w.entity_id = ex_30d.entity_id and w.event_timestamp > ex_30d.ts
)

select *
from features
