-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Merchant volume, and fraud rates of the labels known at t (label delay aware).
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
        range between {{ interval_of(86400, 'second') }} preceding and current row exclude group),
    w_7d as (partition by entity_id order by event_timestamp
        range between {{ interval_of(604800, 'second') }} preceding and current row exclude group),
    w_30d as (partition by entity_id order by event_timestamp
        range between {{ interval_of(2592000, 'second') }} preceding and current row exclude group)
),
labels as (
    select entity_id, event_timestamp, label_timestamp, is_fraud
    from events
    where is_fraud is not null
),

step_changes as (
    -- +1 when an event starts to count, -1 when it stops (see skewless/dbtgen.py)
    select entity_id, ts,
        sum(n_merchant_fraud_risk_1d) as n_merchant_fraud_risk_1d,
        sum(y_merchant_fraud_risk_1d) as y_merchant_fraud_risk_1d,
        sum(n_merchant_fraud_risk_7d) as n_merchant_fraud_risk_7d,
        sum(y_merchant_fraud_risk_7d) as y_merchant_fraud_risk_7d,
        sum(n_merchant_fraud_risk_30d) as n_merchant_fraud_risk_30d,
        sum(y_merchant_fraud_risk_30d) as y_merchant_fraud_risk_30d,
        sum(n_merchant_recent_label_fraud_rate_1d) as n_merchant_recent_label_fraud_rate_1d,
        sum(y_merchant_recent_label_fraud_rate_1d) as y_merchant_recent_label_fraud_rate_1d,
        sum(n_merchant_recent_label_fraud_rate_7d) as n_merchant_recent_label_fraud_rate_7d,
        sum(y_merchant_recent_label_fraud_rate_7d) as y_merchant_recent_label_fraud_rate_7d,
        sum(n_merchant_recent_label_fraud_rate_30d) as n_merchant_recent_label_fraud_rate_30d,
        sum(y_merchant_recent_label_fraud_rate_30d) as y_merchant_recent_label_fraud_rate_30d
    from (
        select entity_id, greatest(label_timestamp, event_timestamp + {{ interval_of(604800, 'second') }} + {{ interval_of(1, 'microsecond') }}) as ts,
            cast(label_timestamp <= event_timestamp + {{ interval_of(691200, 'second') }} as integer) as n_merchant_fraud_risk_1d, case when label_timestamp <= event_timestamp + {{ interval_of(691200, 'second') }} then cast(is_fraud as {{ type_double() }}) else 0 end as y_merchant_fraud_risk_1d, cast(label_timestamp <= event_timestamp + {{ interval_of(1209600, 'second') }} as integer) as n_merchant_fraud_risk_7d, case when label_timestamp <= event_timestamp + {{ interval_of(1209600, 'second') }} then cast(is_fraud as {{ type_double() }}) else 0 end as y_merchant_fraud_risk_7d, cast(label_timestamp <= event_timestamp + {{ interval_of(3196800, 'second') }} as integer) as n_merchant_fraud_risk_30d, case when label_timestamp <= event_timestamp + {{ interval_of(3196800, 'second') }} then cast(is_fraud as {{ type_double() }}) else 0 end as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels
        union all
        select entity_id, greatest(label_timestamp, event_timestamp + {{ interval_of(1, 'microsecond') }}) as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, cast(label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }} as integer) as n_merchant_recent_label_fraud_rate_1d, case when label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }} then cast(is_fraud as {{ type_double() }}) else 0 end as y_merchant_recent_label_fraud_rate_1d, cast(label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }} as integer) as n_merchant_recent_label_fraud_rate_7d, case when label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }} then cast(is_fraud as {{ type_double() }}) else 0 end as y_merchant_recent_label_fraud_rate_7d, cast(label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }} as integer) as n_merchant_recent_label_fraud_rate_30d, case when label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }} then cast(is_fraud as {{ type_double() }}) else 0 end as y_merchant_recent_label_fraud_rate_30d
        from labels
        union all
        select entity_id, event_timestamp + {{ interval_of(691200, 'second') }} + {{ interval_of(1, 'microsecond') }} as ts,
            -1 as n_merchant_fraud_risk_1d, -cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + {{ interval_of(691200, 'second') }}
        union all
        select entity_id, event_timestamp + {{ interval_of(1209600, 'second') }} + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, -1 as n_merchant_fraud_risk_7d, -cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + {{ interval_of(1209600, 'second') }}
        union all
        select entity_id, event_timestamp + {{ interval_of(3196800, 'second') }} + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, -1 as n_merchant_fraud_risk_30d, -cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + {{ interval_of(3196800, 'second') }}
        union all
        select entity_id, least(label_timestamp + {{ interval_of(86400, 'second') }}, event_timestamp + {{ interval_of(2592000, 'second') }}) + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, -1 as n_merchant_recent_label_fraud_rate_1d, -cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
        union all
        select entity_id, least(label_timestamp + {{ interval_of(604800, 'second') }}, event_timestamp + {{ interval_of(2592000, 'second') }}) + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, -1 as n_merchant_recent_label_fraud_rate_7d, -cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
        union all
        select entity_id, least(label_timestamp + {{ interval_of(2592000, 'second') }}, event_timestamp + {{ interval_of(2592000, 'second') }}) + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, -1 as n_merchant_recent_label_fraud_rate_30d, -cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_30d
        from labels where label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
    ) as steps
    group by entity_id, ts
),

windowed_steps as (
    {{ running_sums_at('windowed', ['entity_id', 'event_timestamp', 'transaction_id', 'event_id', 'merchant_tx_count_1d', 'merchant_tx_count_7d', 'merchant_tx_count_30d'], 'step_changes', ['n_merchant_fraud_risk_1d', 'y_merchant_fraud_risk_1d', 'n_merchant_fraud_risk_7d', 'y_merchant_fraud_risk_7d', 'n_merchant_fraud_risk_30d', 'y_merchant_fraud_risk_30d', 'n_merchant_recent_label_fraud_rate_1d', 'y_merchant_recent_label_fraud_rate_1d', 'n_merchant_recent_label_fraud_rate_7d', 'y_merchant_recent_label_fraud_rate_7d', 'n_merchant_recent_label_fraud_rate_30d', 'y_merchant_recent_label_fraud_rate_30d']) }}
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
        w.y_merchant_fraud_risk_1d / nullif(w.n_merchant_fraud_risk_1d, 0) as merchant_fraud_risk_1d,
        w.y_merchant_fraud_risk_7d / nullif(w.n_merchant_fraud_risk_7d, 0) as merchant_fraud_risk_7d,
        w.y_merchant_fraud_risk_30d / nullif(w.n_merchant_fraud_risk_30d, 0) as merchant_fraud_risk_30d,
        w.y_merchant_recent_label_fraud_rate_1d / nullif(w.n_merchant_recent_label_fraud_rate_1d, 0) as merchant_recent_label_fraud_rate_1d,
        w.y_merchant_recent_label_fraud_rate_7d / nullif(w.n_merchant_recent_label_fraud_rate_7d, 0) as merchant_recent_label_fraud_rate_7d,
        w.y_merchant_recent_label_fraud_rate_30d / nullif(w.n_merchant_recent_label_fraud_rate_30d, 0) as merchant_recent_label_fraud_rate_30d
    from windowed_steps as w
)

select *
from features
