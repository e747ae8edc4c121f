-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.
-- One row per labeled event, its label is_fraud and the state just before it of
--   customer_transaction_windows
--   merchant_transaction_windows
-- as the online path could have seen it: from the events that had arrived before it
-- (the arrival-aware feature models).

with events as (
    select transaction_id, event_timestamp, customer_id, merchant_id, amount, is_fraud, label_timestamp
    from {{ ref('stg_raw__transactions') }}
    where is_fraud is not null
),

customer_transaction_windows_rows as (
    select g.*
    from {{ ref('customer_transaction_windows_as_arrived') }} as g
    where not g.is_snapshot
),

merchant_transaction_windows_rows as (
    select g.*
    from {{ ref('merchant_transaction_windows_as_arrived') }} as g
    where not g.is_snapshot
)

select
    events.transaction_id,
    events.event_timestamp,
    events.customer_id,
    events.merchant_id,
    events.amount,
    {{ star_except('customer_transaction_windows_rows', ref('customer_transaction_windows'),
        ['customer_id', 'event_timestamp', 'transaction_id', 'is_snapshot']) }},
    {{ star_except('merchant_transaction_windows_rows', ref('merchant_transaction_windows'),
        ['merchant_id', 'event_timestamp', 'transaction_id', 'is_snapshot']) }},
    events.is_fraud,
    events.label_timestamp
from events
inner join customer_transaction_windows_rows
    on events.transaction_id = customer_transaction_windows_rows.transaction_id
inner join merchant_transaction_windows_rows
    on events.transaction_id = merchant_transaction_windows_rows.transaction_id
