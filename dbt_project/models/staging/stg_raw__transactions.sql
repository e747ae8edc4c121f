-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- Typed, deduplicated transactions with the raw contract's defaults filled in:
-- arrival_timestamp defaults to event_timestamp, label_timestamp to event_timestamp + label delay.
-- Portable SQL: engine differences go through the macros in macros/cross_engine.sql.

with source as (
    select * from {{ source('raw', 'transactions') }}
),

renamed as (
    select
        cast(transaction_id as {{ dbt.type_string() }}) as transaction_id,
        cast(event_timestamp as timestamp) as event_timestamp,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        cast(merchant_id as {{ dbt.type_string() }}) as merchant_id,
        cast(amount as {{ type_double() }}) as amount,
        cast(is_fraud as {{ type_small_int() }}) as is_fraud,
        cast(coalesce(arrival_timestamp, event_timestamp) as timestamp) as arrival_timestamp,
        cast(coalesce(
            label_timestamp,
            event_timestamp + {{ interval_of(var('label_delay_seconds'), 'second') }}
        ) as timestamp) as label_timestamp,
        loaded_at
    from source
),

ranked as (
    select
        *,
        row_number() over (
            partition by transaction_id order by loaded_at, event_timestamp
        ) as occurrence
    from renamed
)

select
    transaction_id,
    event_timestamp,
    customer_id,
    merchant_id,
    amount,
    is_fraud,
    arrival_timestamp,
    label_timestamp
from ranked
where occurrence = 1
