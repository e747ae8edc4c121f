"""Feature views, one per feature group of the declaration (skewless/features.py).

Each source holds the state just before every transaction plus one snapshot row per entity at the
batch cutoff, so point-in-time joins reproduce the training rows and materialization (latest row per
entity) serves the state as of the cutoff. ttl=0: a row stays valid until the next one.
"""

from datetime import timedelta

from data_sources import SOURCES
from entities import ENTITIES
from feast import FeatureView, Field
from feast.types import Float64, Int64

from skewless.features import GROUPS

_TYPES = {"int64": Int64, "float64": Float64}

VIEWS = {
    group.name: FeatureView(
        name=group.name,
        entities=[ENTITIES[group.entity.name]],
        ttl=timedelta(0),
        schema=[
            Field(name=f.name, dtype=_TYPES[f.dtype], description=f.description)
            for f in group.features
        ],
        source=SOURCES[group.name],
        online=True,
        description=group.description,
        owner="ml-platform@skewless.dev",
        tags={"grain": group.grain.value, "declared_in": "skewless/features.py"},
    )
    for group in GROUPS
}

customer_transaction_windows = VIEWS["customer_transaction_windows"]
merchant_transaction_windows = VIEWS["merchant_transaction_windows"]
customer_daily_activity = VIEWS["customer_daily_activity"]
