-- One row per labeled transaction: the customer and merchant state just before it, and its label.
-- This is the set Feast's point-in-time retrieval over the fraud_v1 service must reproduce.

with transactions as (
    select transaction_id, event_timestamp, customer_id, merchant_id, amount, is_fraud, label_timestamp
    from {{ ref('stg_raw__transactions') }}
    where is_fraud is not null
),

customer_windows as (
    select c.*
    from {{ ref('customer_transaction_windows') }} as c
    where not c.is_snapshot
),

merchant_windows as (
    select m.*
    from {{ ref('merchant_transaction_windows') }} as m
    where not m.is_snapshot
)

select
    transactions.transaction_id,
    transactions.event_timestamp,
    transactions.customer_id,
    transactions.merchant_id,
    transactions.amount,
    {{ star_except('customer_windows', ref('customer_transaction_windows'),
        ['customer_id', 'event_timestamp', 'transaction_id', 'is_snapshot']) }},
    {{ star_except('merchant_windows', ref('merchant_transaction_windows'),
        ['merchant_id', 'event_timestamp', 'transaction_id', 'is_snapshot']) }},
    transactions.is_fraud,
    transactions.label_timestamp
from transactions
inner join customer_windows on transactions.transaction_id = customer_windows.transaction_id
inner join merchant_windows on transactions.transaction_id = merchant_windows.transaction_id
