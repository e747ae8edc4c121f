-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Customer spending windows just before each transaction (fraud features).
-- Grain: transaction; entity: customer; windows: 1h, 1d, 7d, 30d.

with events as (
    select customer_id as entity_id, event_timestamp, transaction_id, label_timestamp, cast(amount as decimal(38, 10)) as amount, merchant_id
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
    select entity_id, event_timestamp, transaction_id, event_id, event_time, amount, merchant_id, visit_merchant_id,
        {{ floor_to("event_timestamp", 300) }} as bucket_300,
        {{ floor_to("event_timestamp", 3600) }} as bucket_3600,
        {{ floor_to("event_timestamp", 86400) }} as bucket_86400
    from (
        select entity_id, event_timestamp, transaction_id, transaction_id as event_id,
            event_timestamp as event_time, amount, merchant_id,
            case when merchant_id is not null and row_number() over (partition by entity_id, merchant_id, event_timestamp order by transaction_id) = 1 then 1 end as visit_merchant_id
        from events
        union all
        select entity_id, event_timestamp, null, null, null, null as amount, null as merchant_id, cast(null as integer) as visit_merchant_id
        from query_points
    ) as merged
),

tiles_300 as (
    select entity_id, bucket_300, count(event_id) as n,
        sum(amount) as s_amount, count(amount) as c_amount,
        count(visit_merchant_id) as vc_merchant_id
    from timeline
    group by entity_id, bucket_300
),

tile_sums_300 as (
    select entity_id, bucket_300,
        sum(n) over w_1h as n_1h,
        sum(s_amount) over w_1h as s_amount_1h,
        sum(c_amount) over w_1h as c_amount_1h,
        sum(vc_merchant_id) over w_1h as dn_customer_merchant_distinct_1h,
        sum(n) over w_before as b_n,
        sum(s_amount) over w_before as b_s_amount,
        sum(c_amount) over w_before as b_c_amount,
        sum(vc_merchant_id) over w_before as b_vc_merchant_id
    from tiles_300
    window
    w_1h as (partition by entity_id order by bucket_300
        range between {{ interval_of(3600, 'second') }} preceding and {{ before_current_tile(300) }}),
    w_before as (partition by entity_id order by bucket_300
        rows between unbounded preceding and 1 preceding)
),

tiles_3600 as (
    select entity_id, bucket_3600, count(event_id) as n,
        sum(amount) as s_amount, count(amount) as c_amount,
        count(visit_merchant_id) as vc_merchant_id
    from timeline
    group by entity_id, bucket_3600
),

tile_sums_3600 as (
    select entity_id, bucket_3600,
        sum(n) over w_1d as n_1d,
        sum(s_amount) over w_1d as s_amount_1d,
        sum(c_amount) over w_1d as c_amount_1d,
        sum(n) over w_7d as n_7d,
        sum(s_amount) over w_7d as s_amount_7d,
        sum(c_amount) over w_7d as c_amount_7d,
        sum(vc_merchant_id) over w_1d as dn_customer_merchant_distinct_1d,
        sum(vc_merchant_id) over w_7d as dn_customer_merchant_distinct_7d,
        sum(n) over w_before as b_n,
        sum(s_amount) over w_before as b_s_amount,
        sum(c_amount) over w_before as b_c_amount,
        sum(vc_merchant_id) over w_before as b_vc_merchant_id
    from tiles_3600
    window
    w_1d as (partition by entity_id order by bucket_3600
        range between {{ interval_of(86400, 'second') }} preceding and {{ before_current_tile(3600) }}),
    w_7d as (partition by entity_id order by bucket_3600
        range between {{ interval_of(604800, 'second') }} preceding and {{ before_current_tile(3600) }}),
    w_before as (partition by entity_id order by bucket_3600
        rows between unbounded preceding and 1 preceding)
),

tiles_86400 as (
    select entity_id, bucket_86400, count(event_id) as n,
        sum(amount) as s_amount, count(amount) as c_amount,
        count(visit_merchant_id) as vc_merchant_id
    from timeline
    group by entity_id, bucket_86400
),

tile_sums_86400 as (
    select entity_id, bucket_86400,
        sum(n) over w_30d as n_30d,
        sum(s_amount) over w_30d as s_amount_30d,
        sum(c_amount) over w_30d as c_amount_30d,
        sum(vc_merchant_id) over w_30d as dn_customer_merchant_distinct_30d,
        sum(n) over w_before as b_n,
        sum(s_amount) over w_before as b_s_amount,
        sum(c_amount) over w_before as b_c_amount,
        sum(vc_merchant_id) over w_before as b_vc_merchant_id
    from tiles_86400
    window
    w_30d as (partition by entity_id order by bucket_86400
        range between {{ interval_of(2592000, 'second') }} preceding and {{ before_current_tile(86400) }}),
    w_before as (partition by entity_id order by bucket_86400
        rows between unbounded preceding and 1 preceding)
),

windowed as (
    select
        s.entity_id, s.event_timestamp, s.transaction_id, s.event_id,
        cast(coalesce(t_300.n_1h, 0) + (count(s.event_id) over w_all - coalesce(t_300.b_n, 0)) as bigint) as customer_tx_count_1h,
        cast(coalesce(t_3600.n_1d, 0) + (count(s.event_id) over w_all - coalesce(t_3600.b_n, 0)) as bigint) as customer_tx_count_1d,
        cast(coalesce(t_3600.n_7d, 0) + (count(s.event_id) over w_all - coalesce(t_3600.b_n, 0)) as bigint) as customer_tx_count_7d,
        cast(coalesce(t_86400.n_30d, 0) + (count(s.event_id) over w_all - coalesce(t_86400.b_n, 0)) as bigint) as customer_tx_count_30d,
        cast(coalesce(t_300.s_amount_1h, 0) + (coalesce(sum(s.amount) over w_all, 0) - coalesce(t_300.b_s_amount, 0)) as {{ type_double() }}) as customer_amount_sum_1h,
        cast(coalesce(t_3600.s_amount_1d, 0) + (coalesce(sum(s.amount) over w_all, 0) - coalesce(t_3600.b_s_amount, 0)) as {{ type_double() }}) as customer_amount_sum_1d,
        cast(coalesce(t_3600.s_amount_7d, 0) + (coalesce(sum(s.amount) over w_all, 0) - coalesce(t_3600.b_s_amount, 0)) as {{ type_double() }}) as customer_amount_sum_7d,
        cast(coalesce(t_86400.s_amount_30d, 0) + (coalesce(sum(s.amount) over w_all, 0) - coalesce(t_86400.b_s_amount, 0)) as {{ type_double() }}) as customer_amount_sum_30d,
        cast(coalesce(t_300.s_amount_1h, 0) + (coalesce(sum(s.amount) over w_all, 0) - coalesce(t_300.b_s_amount, 0)) as {{ type_double() }}) / nullif(coalesce(t_300.c_amount_1h, 0) + (count(s.amount) over w_all - coalesce(t_300.b_c_amount, 0)), 0) as customer_amount_avg_1h,
        cast(coalesce(t_3600.s_amount_1d, 0) + (coalesce(sum(s.amount) over w_all, 0) - coalesce(t_3600.b_s_amount, 0)) as {{ type_double() }}) / nullif(coalesce(t_3600.c_amount_1d, 0) + (count(s.amount) over w_all - coalesce(t_3600.b_c_amount, 0)), 0) as customer_amount_avg_1d,
        cast(coalesce(t_3600.s_amount_7d, 0) + (coalesce(sum(s.amount) over w_all, 0) - coalesce(t_3600.b_s_amount, 0)) as {{ type_double() }}) / nullif(coalesce(t_3600.c_amount_7d, 0) + (count(s.amount) over w_all - coalesce(t_3600.b_c_amount, 0)), 0) as customer_amount_avg_7d,
        cast(coalesce(t_86400.s_amount_30d, 0) + (coalesce(sum(s.amount) over w_all, 0) - coalesce(t_86400.b_s_amount, 0)) as {{ type_double() }}) / nullif(coalesce(t_86400.c_amount_30d, 0) + (count(s.amount) over w_all - coalesce(t_86400.b_c_amount, 0)), 0) as customer_amount_avg_30d,
        {{ seconds_between("max(s.event_time) over w_all", "s.event_timestamp") }} as customer_seconds_since_last_tx,
        coalesce(t_300.dn_customer_merchant_distinct_1h, 0) + (count(s.visit_merchant_id) over w_all - coalesce(t_300.b_vc_merchant_id, 0)) as tn_customer_merchant_distinct_1h,
        coalesce(t_3600.dn_customer_merchant_distinct_1d, 0) + (count(s.visit_merchant_id) over w_all - coalesce(t_3600.b_vc_merchant_id, 0)) as tn_customer_merchant_distinct_1d,
        coalesce(t_3600.dn_customer_merchant_distinct_7d, 0) + (count(s.visit_merchant_id) over w_all - coalesce(t_3600.b_vc_merchant_id, 0)) as tn_customer_merchant_distinct_7d,
        coalesce(t_86400.dn_customer_merchant_distinct_30d, 0) + (count(s.visit_merchant_id) over w_all - coalesce(t_86400.b_vc_merchant_id, 0)) as tn_customer_merchant_distinct_30d
    from timeline as s
    left join tile_sums_300 as t_300
        on t_300.entity_id = s.entity_id and t_300.bucket_300 = s.bucket_300
    left join tile_sums_3600 as t_3600
        on t_3600.entity_id = s.entity_id and t_3600.bucket_3600 = s.bucket_3600
    left join tile_sums_86400 as t_86400
        on t_86400.entity_id = s.entity_id and t_86400.bucket_86400 = s.bucket_86400
    window
    w_all as (partition by s.entity_id order by s.event_timestamp
        range between unbounded preceding and {{ before_peers() }})
),

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
    -- what the tiles miscount, per entity and time: +1 from when, -1 until (skewless/dbtgen.py)
    select entity_id, ts,
        sum(n_customer_merchant_distinct_1h) as n_customer_merchant_distinct_1h,
        sum(n_customer_merchant_distinct_1d) as n_customer_merchant_distinct_1d,
        sum(n_customer_merchant_distinct_7d) as n_customer_merchant_distinct_7d,
        sum(n_customer_merchant_distinct_30d) as n_customer_merchant_distinct_30d
    from (
        select entity_id, next_at + {{ interval_of(1, 'microsecond') }} as ts,
            cast(next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 300) }} + {{ interval_of(3900, 'second') }} as integer) as n_customer_merchant_distinct_1h, cast(next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(90000, 'second') }} as integer) as n_customer_merchant_distinct_1d, cast(next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(608400, 'second') }} as integer) as n_customer_merchant_distinct_7d, cast(next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 86400) }} + {{ interval_of(2678400, 'second') }} as integer) as n_customer_merchant_distinct_30d
        from merchant_id_visits where next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 300) }} + {{ interval_of(3900, 'second') }} or next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(90000, 'second') }} or next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(608400, 'second') }} or next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 86400) }} + {{ interval_of(2678400, 'second') }}
        union all
        select entity_id, {{ floor_to("event_timestamp", 300) }} + {{ interval_of(3900, 'second') }} as ts,
            -1 as n_customer_merchant_distinct_1h, 0 as n_customer_merchant_distinct_1d, 0 as n_customer_merchant_distinct_7d, 0 as n_customer_merchant_distinct_30d
        from merchant_id_visits where next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 300) }} + {{ interval_of(3900, 'second') }}
        union all
        select entity_id, {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(90000, 'second') }} as ts,
            0 as n_customer_merchant_distinct_1h, -1 as n_customer_merchant_distinct_1d, 0 as n_customer_merchant_distinct_7d, 0 as n_customer_merchant_distinct_30d
        from merchant_id_visits where next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(90000, 'second') }}
        union all
        select entity_id, {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(608400, 'second') }} as ts,
            0 as n_customer_merchant_distinct_1h, 0 as n_customer_merchant_distinct_1d, -1 as n_customer_merchant_distinct_7d, 0 as n_customer_merchant_distinct_30d
        from merchant_id_visits where next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 3600) }} + {{ interval_of(608400, 'second') }}
        union all
        select entity_id, {{ floor_to("event_timestamp", 86400) }} + {{ interval_of(2678400, 'second') }} as ts,
            0 as n_customer_merchant_distinct_1h, 0 as n_customer_merchant_distinct_1d, 0 as n_customer_merchant_distinct_7d, -1 as n_customer_merchant_distinct_30d
        from merchant_id_visits where next_at + {{ interval_of(1, 'microsecond') }} < {{ floor_to("event_timestamp", 86400) }} + {{ interval_of(2678400, 'second') }}
    ) as steps
    group by entity_id, ts
),

windowed_steps as (
    {{ running_sums_at('windowed', ['entity_id', 'event_timestamp', 'transaction_id', 'event_id', 'customer_tx_count_1h', 'customer_tx_count_1d', 'customer_tx_count_7d', 'customer_tx_count_30d', 'customer_amount_sum_1h', 'customer_amount_sum_1d', 'customer_amount_sum_7d', 'customer_amount_sum_30d', 'customer_amount_avg_1h', 'customer_amount_avg_1d', 'customer_amount_avg_7d', 'customer_amount_avg_30d', 'customer_seconds_since_last_tx', 'tn_customer_merchant_distinct_1h', 'tn_customer_merchant_distinct_1d', 'tn_customer_merchant_distinct_7d', 'tn_customer_merchant_distinct_30d'], 'step_changes', ['n_customer_merchant_distinct_1h', 'n_customer_merchant_distinct_1d', 'n_customer_merchant_distinct_7d', 'n_customer_merchant_distinct_30d']) }}
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
        cast(w.tn_customer_merchant_distinct_1h - coalesce(w.n_customer_merchant_distinct_1h, 0) as bigint) as customer_merchant_distinct_1h,
        cast(w.tn_customer_merchant_distinct_1d - coalesce(w.n_customer_merchant_distinct_1d, 0) as bigint) as customer_merchant_distinct_1d,
        cast(w.tn_customer_merchant_distinct_7d - coalesce(w.n_customer_merchant_distinct_7d, 0) as bigint) as customer_merchant_distinct_7d,
        cast(w.tn_customer_merchant_distinct_30d - coalesce(w.n_customer_merchant_distinct_30d, 0) as bigint) as customer_merchant_distinct_30d,
        w.customer_seconds_since_last_tx
    from windowed_steps as w
)

select *
from features
