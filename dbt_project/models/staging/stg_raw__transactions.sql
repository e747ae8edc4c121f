-- Typed, deduplicated transactions with the defaults of DESIGN section 3 filled in:
-- arrival_timestamp defaults to event_timestamp, label_timestamp to event_timestamp + label delay.

with source as (
    select * from {{ source('raw', 'transactions') }}
),

renamed as (
    select
        transaction_id::varchar as transaction_id,
        event_timestamp::timestamp as event_timestamp,
        customer_id::varchar as customer_id,
        merchant_id::varchar as merchant_id,
        amount::double as amount,
        is_fraud::tinyint as is_fraud,
        coalesce(arrival_timestamp, event_timestamp)::timestamp as arrival_timestamp,
        coalesce(
            label_timestamp,
            event_timestamp + to_seconds({{ var('label_delay_seconds') }})
        )::timestamp as label_timestamp,
        loaded_at
    from source
),

deduplicated as (
    select *
    from renamed
    qualify row_number() over (partition by transaction_id order by loaded_at, event_timestamp) = 1
)

select * exclude (loaded_at) from deduplicated
