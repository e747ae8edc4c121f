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

timeline as (
    select entity_id, event_timestamp, transaction_id, event_id, event_time, is_fraud, lt_is_fraud_2592000, is_label,
        {{ floor_to("event_timestamp", 3600) }} as bucket_3600,
        {{ floor_to("event_timestamp", 86400) }} as bucket_86400
    from (
        select entity_id, event_timestamp, transaction_id, transaction_id as event_id,
            event_timestamp as event_time, is_fraud, cast(null as {{ type_double() }}) as lt_is_fraud_2592000, false as is_label
        from events
        union all
        select entity_id, event_timestamp, null, null, null, null as is_fraud, cast(null as {{ type_double() }}) as lt_is_fraud_2592000, false as is_label
        from query_points
        union all
        -- each label at the time it became known (windows over label time)
        select entity_id, label_timestamp, null, null, null, null as is_fraud, cast(case when label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }} then is_fraud end as {{ type_double() }}) as lt_is_fraud_2592000, true
        from events
        where (is_fraud is not null) and label_timestamp > event_timestamp
    ) as merged
),

tiles_3600 as (
    select entity_id, bucket_3600, count(event_id) as n,
        sum(cast(is_fraud as {{ type_double() }})) as ls_is_fraud, count(is_fraud) as lc_is_fraud,
        sum(cast(lt_is_fraud_2592000 as {{ type_double() }})) as ls_lt_is_fraud_2592000, count(lt_is_fraud_2592000) as lc_lt_is_fraud_2592000
    from timeline
    group by entity_id, bucket_3600
),

tile_sums_3600 as (
    select entity_id, bucket_3600,
        sum(n) over w_1d as n_1d,
        sum(n) over w_7d as n_7d,
        sum(lc_is_fraud) over w_1d_604800 as ln_merchant_fraud_risk_1d,
        sum(ls_is_fraud) over w_1d_604800 as ly_merchant_fraud_risk_1d,
        sum(lc_is_fraud) over w_7d_604800 as ln_merchant_fraud_risk_7d,
        sum(ls_is_fraud) over w_7d_604800 as ly_merchant_fraud_risk_7d,
        sum(lc_lt_is_fraud_2592000) over w_1d as ln_merchant_recent_label_fraud_rate_1d,
        sum(ls_lt_is_fraud_2592000) over w_1d as ly_merchant_recent_label_fraud_rate_1d,
        sum(lc_lt_is_fraud_2592000) over w_7d as ln_merchant_recent_label_fraud_rate_7d,
        sum(ls_lt_is_fraud_2592000) over w_7d as ly_merchant_recent_label_fraud_rate_7d,
        sum(n) over w_before as b_n,
        sum(lc_lt_is_fraud_2592000) over w_before as b_lc_lt_is_fraud_2592000,
        sum(ls_lt_is_fraud_2592000) over w_before as b_ls_lt_is_fraud_2592000
    from tiles_3600
    window
    w_1d as (partition by entity_id order by bucket_3600
        range between {{ interval_of(86400, 'second') }} preceding and {{ before_current_tile(3600) }}),
    w_7d as (partition by entity_id order by bucket_3600
        range between {{ interval_of(604800, 'second') }} preceding and {{ before_current_tile(3600) }}),
    w_1d_604800 as (partition by entity_id order by bucket_3600
        range between {{ interval_of(691200, 'second') }} preceding and {{ interval_of(608400, 'second') }} preceding),
    w_7d_604800 as (partition by entity_id order by bucket_3600
        range between {{ interval_of(1209600, 'second') }} preceding and {{ interval_of(608400, 'second') }} preceding),
    w_before as (partition by entity_id order by bucket_3600
        rows between unbounded preceding and 1 preceding)
),

tiles_86400 as (
    select entity_id, bucket_86400, count(event_id) as n,
        sum(cast(is_fraud as {{ type_double() }})) as ls_is_fraud, count(is_fraud) as lc_is_fraud,
        sum(cast(lt_is_fraud_2592000 as {{ type_double() }})) as ls_lt_is_fraud_2592000, count(lt_is_fraud_2592000) as lc_lt_is_fraud_2592000
    from timeline
    group by entity_id, bucket_86400
),

tile_sums_86400 as (
    select entity_id, bucket_86400,
        sum(n) over w_30d as n_30d,
        sum(lc_is_fraud) over w_30d_604800 as ln_merchant_fraud_risk_30d,
        sum(ls_is_fraud) over w_30d_604800 as ly_merchant_fraud_risk_30d,
        sum(lc_lt_is_fraud_2592000) over w_30d as ln_merchant_recent_label_fraud_rate_30d,
        sum(ls_lt_is_fraud_2592000) over w_30d as ly_merchant_recent_label_fraud_rate_30d,
        sum(n) over w_before as b_n,
        sum(lc_lt_is_fraud_2592000) over w_before as b_lc_lt_is_fraud_2592000,
        sum(ls_lt_is_fraud_2592000) over w_before as b_ls_lt_is_fraud_2592000
    from tiles_86400
    window
    w_30d as (partition by entity_id order by bucket_86400
        range between {{ interval_of(2592000, 'second') }} preceding and {{ before_current_tile(86400) }}),
    w_30d_604800 as (partition by entity_id order by bucket_86400
        range between {{ interval_of(3196800, 'second') }} preceding and {{ interval_of(691200, 'second') }} preceding),
    w_before as (partition by entity_id order by bucket_86400
        rows between unbounded preceding and 1 preceding)
),

windowed as (
    select
        s.entity_id, s.event_timestamp, s.transaction_id, s.event_id,
        cast(coalesce(t_3600.n_1d, 0) + (count(s.event_id) over w_all - coalesce(t_3600.b_n, 0)) as bigint) as merchant_tx_count_1d,
        cast(coalesce(t_3600.n_7d, 0) + (count(s.event_id) over w_all - coalesce(t_3600.b_n, 0)) as bigint) as merchant_tx_count_7d,
        cast(coalesce(t_86400.n_30d, 0) + (count(s.event_id) over w_all - coalesce(t_86400.b_n, 0)) as bigint) as merchant_tx_count_30d,
        coalesce(t_3600.ln_merchant_fraud_risk_1d, 0) as tn_merchant_fraud_risk_1d,
        coalesce(t_3600.ly_merchant_fraud_risk_1d, 0) as ty_merchant_fraud_risk_1d,
        coalesce(t_3600.ln_merchant_fraud_risk_7d, 0) as tn_merchant_fraud_risk_7d,
        coalesce(t_3600.ly_merchant_fraud_risk_7d, 0) as ty_merchant_fraud_risk_7d,
        coalesce(t_86400.ln_merchant_fraud_risk_30d, 0) as tn_merchant_fraud_risk_30d,
        coalesce(t_86400.ly_merchant_fraud_risk_30d, 0) as ty_merchant_fraud_risk_30d,
        coalesce(t_3600.ln_merchant_recent_label_fraud_rate_1d, 0) + (count(s.lt_is_fraud_2592000) over w_upto - coalesce(t_3600.b_lc_lt_is_fraud_2592000, 0)) as tn_merchant_recent_label_fraud_rate_1d,
        coalesce(t_3600.ly_merchant_recent_label_fraud_rate_1d, 0) + (coalesce(sum(cast(s.lt_is_fraud_2592000 as {{ type_double() }})) over w_upto, 0) - coalesce(t_3600.b_ls_lt_is_fraud_2592000, 0)) as ty_merchant_recent_label_fraud_rate_1d,
        coalesce(t_3600.ln_merchant_recent_label_fraud_rate_7d, 0) + (count(s.lt_is_fraud_2592000) over w_upto - coalesce(t_3600.b_lc_lt_is_fraud_2592000, 0)) as tn_merchant_recent_label_fraud_rate_7d,
        coalesce(t_3600.ly_merchant_recent_label_fraud_rate_7d, 0) + (coalesce(sum(cast(s.lt_is_fraud_2592000 as {{ type_double() }})) over w_upto, 0) - coalesce(t_3600.b_ls_lt_is_fraud_2592000, 0)) as ty_merchant_recent_label_fraud_rate_7d,
        coalesce(t_86400.ln_merchant_recent_label_fraud_rate_30d, 0) + (count(s.lt_is_fraud_2592000) over w_upto - coalesce(t_86400.b_lc_lt_is_fraud_2592000, 0)) as tn_merchant_recent_label_fraud_rate_30d,
        coalesce(t_86400.ly_merchant_recent_label_fraud_rate_30d, 0) + (coalesce(sum(cast(s.lt_is_fraud_2592000 as {{ type_double() }})) over w_upto, 0) - coalesce(t_86400.b_ls_lt_is_fraud_2592000, 0)) as ty_merchant_recent_label_fraud_rate_30d,
        s.is_label
    from timeline as s
    left join tile_sums_3600 as t_3600
        on t_3600.entity_id = s.entity_id and t_3600.bucket_3600 = s.bucket_3600
    left join tile_sums_86400 as t_86400
        on t_86400.entity_id = s.entity_id and t_86400.bucket_86400 = s.bucket_86400
    window
    w_all as (partition by s.entity_id order by s.event_timestamp
        range between unbounded preceding and {{ before_peers() }}),
    w_upto as (partition by s.entity_id order by s.event_timestamp
        range between unbounded preceding and current row)
),

points as (
    -- the rows features are read at: events and snapshots, no label rows
    select * from windowed where not is_label
),

labels as (
    select entity_id, event_timestamp, label_timestamp, is_fraud
    from events
    where is_fraud is not null
),

step_changes as (
    -- what the tiles miscount, per entity and time: +1 from when, -1 until (skewless/dbtgen.py)
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
        select entity_id, {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(608400, 'second') }} as ts,
            1 as n_merchant_fraud_risk_1d, cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_1d, 1 as n_merchant_fraud_risk_7d, cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp > {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(608400, 'second') }}
        union all
        select entity_id, {{ floor_to("event_timestamp", 86400) }} + {{ interval_of(691200, 'second') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 1 as n_merchant_fraud_risk_30d, cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp > {{ floor_to("event_timestamp", 86400) }} + {{ interval_of(691200, 'second') }}
        union all
        select entity_id, event_timestamp + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 1 as n_merchant_recent_label_fraud_rate_1d, cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp <= event_timestamp and event_timestamp + {{ interval_of(1, 'microsecond') }} < {{ floor_to("label_timestamp", 3600) }} + {{ interval_of(90000, 'second') }} and label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
        union all
        select entity_id, event_timestamp + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 1 as n_merchant_recent_label_fraud_rate_7d, cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp <= event_timestamp and event_timestamp + {{ interval_of(1, 'microsecond') }} < {{ floor_to("label_timestamp", 3600) }} + {{ interval_of(608400, 'second') }} and label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
        union all
        select entity_id, event_timestamp + {{ interval_of(1, 'microsecond') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 1 as n_merchant_recent_label_fraud_rate_30d, cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp <= event_timestamp and event_timestamp + {{ interval_of(1, 'microsecond') }} < {{ floor_to("label_timestamp", 86400) }} + {{ interval_of(2678400, 'second') }} and label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
        union all
        select entity_id, least(label_timestamp, {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(694800, 'second') }}) as ts,
            -1 as n_merchant_fraud_risk_1d, -cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp > {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(608400, 'second') }}
        union all
        select entity_id, least(label_timestamp, {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(1213200, 'second') }}) as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, -1 as n_merchant_fraud_risk_7d, -cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp > {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(608400, 'second') }}
        union all
        select entity_id, least(label_timestamp, {{ floor_to("event_timestamp", 86400) }} + {{ interval_of(3283200, 'second') }}) as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, -1 as n_merchant_fraud_risk_30d, -cast(is_fraud as {{ type_double() }}) as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp > {{ floor_to("event_timestamp", 86400) }} + {{ interval_of(691200, 'second') }}
        union all
        select entity_id, {{ floor_to("label_timestamp", 3600) }} + {{ interval_of(90000, 'second') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, -1 as n_merchant_recent_label_fraud_rate_1d, -cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp <= event_timestamp and event_timestamp + {{ interval_of(1, 'microsecond') }} < {{ floor_to("label_timestamp", 3600) }} + {{ interval_of(90000, 'second') }} and label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
        union all
        select entity_id, {{ floor_to("label_timestamp", 3600) }} + {{ interval_of(608400, 'second') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, -1 as n_merchant_recent_label_fraud_rate_7d, -cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_7d, 0 as n_merchant_recent_label_fraud_rate_30d, 0 as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp <= event_timestamp and event_timestamp + {{ interval_of(1, 'microsecond') }} < {{ floor_to("label_timestamp", 3600) }} + {{ interval_of(608400, 'second') }} and label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
        union all
        select entity_id, {{ floor_to("label_timestamp", 86400) }} + {{ interval_of(2678400, 'second') }} as ts,
            0 as n_merchant_fraud_risk_1d, 0 as y_merchant_fraud_risk_1d, 0 as n_merchant_fraud_risk_7d, 0 as y_merchant_fraud_risk_7d, 0 as n_merchant_fraud_risk_30d, 0 as y_merchant_fraud_risk_30d, 0 as n_merchant_recent_label_fraud_rate_1d, 0 as y_merchant_recent_label_fraud_rate_1d, 0 as n_merchant_recent_label_fraud_rate_7d, 0 as y_merchant_recent_label_fraud_rate_7d, -1 as n_merchant_recent_label_fraud_rate_30d, -cast(is_fraud as {{ type_double() }}) as y_merchant_recent_label_fraud_rate_30d
        from labels where is_fraud is not null and label_timestamp <= event_timestamp and event_timestamp + {{ interval_of(1, 'microsecond') }} < {{ floor_to("label_timestamp", 86400) }} + {{ interval_of(2678400, 'second') }} and label_timestamp <= event_timestamp + {{ interval_of(2592000, 'second') }}
    ) as steps
    group by entity_id, ts
),

windowed_steps as (
    {{ running_sums_at('points', ['entity_id', 'event_timestamp', 'transaction_id', 'event_id', 'merchant_tx_count_1d', 'merchant_tx_count_7d', 'merchant_tx_count_30d', 'tn_merchant_fraud_risk_1d', 'ty_merchant_fraud_risk_1d', 'tn_merchant_fraud_risk_7d', 'ty_merchant_fraud_risk_7d', 'tn_merchant_fraud_risk_30d', 'ty_merchant_fraud_risk_30d', 'tn_merchant_recent_label_fraud_rate_1d', 'ty_merchant_recent_label_fraud_rate_1d', 'tn_merchant_recent_label_fraud_rate_7d', 'ty_merchant_recent_label_fraud_rate_7d', 'tn_merchant_recent_label_fraud_rate_30d', 'ty_merchant_recent_label_fraud_rate_30d'], 'step_changes', ['n_merchant_fraud_risk_1d', 'y_merchant_fraud_risk_1d', 'n_merchant_fraud_risk_7d', 'y_merchant_fraud_risk_7d', 'n_merchant_fraud_risk_30d', 'y_merchant_fraud_risk_30d', 'n_merchant_recent_label_fraud_rate_1d', 'y_merchant_recent_label_fraud_rate_1d', 'n_merchant_recent_label_fraud_rate_7d', 'y_merchant_recent_label_fraud_rate_7d', 'n_merchant_recent_label_fraud_rate_30d', 'y_merchant_recent_label_fraud_rate_30d']) }}
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
        (w.ty_merchant_fraud_risk_1d - coalesce(w.y_merchant_fraud_risk_1d, 0)) / nullif(w.tn_merchant_fraud_risk_1d - coalesce(w.n_merchant_fraud_risk_1d, 0), 0) as merchant_fraud_risk_1d,
        (w.ty_merchant_fraud_risk_7d - coalesce(w.y_merchant_fraud_risk_7d, 0)) / nullif(w.tn_merchant_fraud_risk_7d - coalesce(w.n_merchant_fraud_risk_7d, 0), 0) as merchant_fraud_risk_7d,
        (w.ty_merchant_fraud_risk_30d - coalesce(w.y_merchant_fraud_risk_30d, 0)) / nullif(w.tn_merchant_fraud_risk_30d - coalesce(w.n_merchant_fraud_risk_30d, 0), 0) as merchant_fraud_risk_30d,
        (w.ty_merchant_recent_label_fraud_rate_1d + coalesce(w.y_merchant_recent_label_fraud_rate_1d, 0)) / nullif(w.tn_merchant_recent_label_fraud_rate_1d + coalesce(w.n_merchant_recent_label_fraud_rate_1d, 0), 0) as merchant_recent_label_fraud_rate_1d,
        (w.ty_merchant_recent_label_fraud_rate_7d + coalesce(w.y_merchant_recent_label_fraud_rate_7d, 0)) / nullif(w.tn_merchant_recent_label_fraud_rate_7d + coalesce(w.n_merchant_recent_label_fraud_rate_7d, 0), 0) as merchant_recent_label_fraud_rate_7d,
        (w.ty_merchant_recent_label_fraud_rate_30d + coalesce(w.y_merchant_recent_label_fraud_rate_30d, 0)) / nullif(w.tn_merchant_recent_label_fraud_rate_30d + coalesce(w.n_merchant_recent_label_fraud_rate_30d, 0), 0) as merchant_recent_label_fraud_rate_30d
    from windowed_steps as w
)

select *
from features
