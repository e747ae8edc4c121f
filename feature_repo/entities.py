"""Feast entities, one per entity of the declaration (skewless/features.py)."""

from feast import Entity, ValueType

from skewless.features import ENTITIES as DECLARED

ENTITIES = {
    entity.name: Entity(
        name=entity.name,
        join_keys=[entity.join_key],
        value_type=ValueType.STRING,
        description=entity.description,
        owner="ml-platform@skewless.dev",
        tags={"domain": "payments"},
    )
    for entity in DECLARED
}

# `feast apply` finds the objects among the module's attributes.
globals().update(ENTITIES)
