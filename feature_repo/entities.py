"""Feast entities, one per entity of the feature declaration (skewless/features.py)."""

from feast import Entity, ValueType

from skewless.features import CUSTOMER, MERCHANT

customer = Entity(
    name=CUSTOMER.name,
    join_keys=[CUSTOMER.join_key],
    value_type=ValueType.STRING,
    description=CUSTOMER.description,
    owner="ml-platform@skewless.dev",
    tags={"domain": "payments"},
)

merchant = Entity(
    name=MERCHANT.name,
    join_keys=[MERCHANT.join_key],
    value_type=ValueType.STRING,
    description=MERCHANT.description,
    owner="ml-platform@skewless.dev",
    tags={"domain": "payments"},
)

ENTITIES = {CUSTOMER.name: customer, MERCHANT.name: merchant}
