"""Feature views, one per feature group of the declaration (skewless/features.py).

Each source holds the state just before every transaction plus one snapshot row per entity at the
batch cutoff, so point-in-time joins reproduce the training rows and materialization (latest row per
entity) serves the state as of the cutoff. ttl=0: a row stays valid until the next one.

STREAM_VIEWS (``<group>_stream``) hold the same features of the fraud service's groups as the
stream consumer (serving/stream_consumer.py) computes them and pushes them through the groups' push
sources. Their batch source is the group's dbt export, so `feast materialize` of every view also
backfills them as of the batch cutoff; the consumer replaces those rows when it resets.
"""

from datetime import timedelta

from data_sources import PUSH_SOURCES, SOURCES
from entities import ENTITIES
from feast import FeatureView, Field
from feast.types import Float64, Int64

from skewless.features import GROUPS
from skewless.stream import stream_view_name, streamed_groups

_TYPES = {"int64": Int64, "float64": Float64}


def _schema(group) -> list[Field]:
    return [
        Field(name=f.name, dtype=_TYPES[f.dtype], description=f.description) for f in group.features
    ]


VIEWS = {
    group.name: FeatureView(
        name=group.name,
        entities=[ENTITIES[group.entity.name]],
        ttl=timedelta(0),
        schema=_schema(group),
        source=SOURCES[group.name],
        online=True,
        description=group.description,
        owner="ml-platform@skewless.dev",
        tags={"grain": group.grain.value, "declared_in": "skewless/features.py"},
    )
    for group in GROUPS
}

# `feast apply` finds the objects among the module's attributes.
globals().update(VIEWS)

STREAM_VIEWS = {
    group.name: FeatureView(
        name=stream_view_name(group.name),
        entities=[ENTITIES[group.entity.name]],
        ttl=timedelta(0),
        schema=_schema(group),
        source=PUSH_SOURCES[group.name],
        online=True,
        description=f"{group.description} Streamed: as of the consumer's latest update.",
        owner="ml-platform@skewless.dev",
        tags={
            "grain": "stream",
            "declared_in": "skewless/features.py",
            "producer": "skewless stream-consumer",
        },
    )
    for group in streamed_groups()
}

globals().update({view.name: view for view in STREAM_VIEWS.values()})
