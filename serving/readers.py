"""Online feature readers, one per serving mode, all driven by the one feature declaration.

A reader turns a scoring request into the feature service's group features (one Redis round trip)
and says which entities had no online state. Entities without state get the features of an empty
history (``evaluate(group, [], t)``: counts 0, means null …), exactly what the offline truth holds
for an entity's first event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from serving.redisio import round_trips
from serving.state import ExactState
from skewless import feast_layout, modes, stream
from skewless.evaluate import evaluate
from skewless.features import FeatureGroup, FeatureService


class FeaturesUnavailable(RuntimeError):
    """The mode cannot produce features now (answered 503 with this reason)."""


@dataclass
class FeatureRead:
    values: dict[str, Any]  # every group feature of the service
    missing: list[str] = field(default_factory=list)  # entity names without online state
    as_of: dict[str, str | None] = field(default_factory=dict)  # group -> feature row time


class Request(Protocol):
    customer_id: str
    merchant_id: str
    event_timestamp: datetime  # naive UTC


class Reader(Protocol):
    mode: str

    def read(self, request: Request) -> FeatureRead: ...


def _entity_value(request, group: FeatureGroup) -> str:
    return getattr(request, group.entity.join_key)


_EMPTY: dict[str, dict] = {}


def empty_history(group: FeatureGroup, at: datetime) -> dict:
    """The features of an entity with no events (a copy). Without events no value depends on
    the time, so each group's is computed once."""
    if group.name not in _EMPTY:
        _EMPTY[group.name] = evaluate(group, [], at)
    return dict(_EMPTY[group.name])


class MaterializedReader:
    """Features as last materialized by Feast, read straight from Feast's Redis layout: one HMGET
    per group, all in one pipeline (one round trip per request). ``view_name`` maps a group to
    the Feast view holding it (default: the batch view named after the group)."""

    mode = "materialized"

    def __init__(self, redis, service: FeatureService, project: str, view_name=None):
        self.round_trip = round_trips(redis)  # a redis client or a shared RoundTrips
        self.service = service
        self.project = project
        self._plans = []
        for group in service.groups:
            view = view_name(group.name) if view_name else group.name
            names = group.feature_names
            fields = [feast_layout.feature_field(view, n) for n in names]
            fields.append(feast_layout.timestamp_field(view))
            self._plans.append((group, names, fields))

    def _commands(self, keys: dict[str, str]) -> list[tuple]:
        return [
            (
                "HMGET",
                feast_layout.entity_key(
                    group.entity.join_key, keys[group.entity.join_key], self.project
                ),
                *fields,
            )
            for group, _, fields in self._plans
        ]

    def _decode(self, replies: list) -> dict[str, tuple[datetime | None, dict | None]]:
        out = {}
        for (group, names, _), reply in zip(self._plans, replies, strict=True):
            ts = feast_layout.decode_timestamp(reply[-1])
            if ts is None and not any(reply[:-1]):
                out[group.name] = (None, None)
                continue
            values = {n: feast_layout.decode_value(v) for n, v in zip(names, reply, strict=False)}
            out[group.name] = (ts, values)
        return out

    def read_raw(self, keys: dict[str, str]) -> dict[str, tuple[datetime | None, dict | None]]:
        """group name -> (row time, {feature: value}) or (None, None) when the entity has no
        row; ``keys`` maps join keys to values. What Feast's online_read returns, decoded."""
        return self._decode(self.round_trip(*self._commands(keys)))

    def read(self, request: Request) -> FeatureRead:
        keys = {g.entity.join_key: _entity_value(request, g) for g, _, _ in self._plans}
        raw = self.read_raw(keys)
        result = FeatureRead({})
        for group, _, _ in self._plans:
            ts, values = raw[group.name]
            if values is None:
                values = empty_history(group, request.event_timestamp)
                if group.entity.name not in result.missing:
                    result.missing.append(group.entity.name)
            result.values.update(values)
            result.as_of[group.name] = None if ts is None else ts.replace(tzinfo=None).isoformat()
        return result


class ExactReader:
    """Windows computed at request time from each entity's tiles and recent raw events in Redis
    (``ExactState``), by the tile evaluation a property test holds equal to the dbt SQL's."""

    mode = "exact"

    def __init__(self, state: ExactState):
        self.state = state
        self.service = state.service
        self.entities = list(state.join_keys)  # entity names, in first-seen order

    def read(self, request: Request) -> FeatureRead:
        at = request.event_timestamp
        keys = [(e, str(getattr(request, self.state.join_keys[e]))) for e in self.entities]
        states = dict(zip(self.entities, self.state.read(keys, at), strict=True))
        result = FeatureRead({})
        for entity, state in states.items():
            if state.empty:
                result.missing.append(entity)
        for group in self.service.groups:
            result.values.update(self.state.features(group, states[group.entity.name], at))
            result.as_of[group.name] = at.isoformat()
        return result


class StreamingReader(MaterializedReader):
    """``streaming`` mode: the rows the stream consumer (``serving/stream_consumer.py``) pushed
    through Feast push sources into the ``<group>_stream`` views, read like ``MaterializedReader``
    reads the batch views, in the same single round trip as a check that the consumer has ever run.

    An entity with no streamed row is served the features of an empty history and named in
    ``features_missing``, as in the other modes. Only when the consumer has never written its
    status (``skewless:{stream}:consumer``) is every request a 503."""

    mode = "streaming"

    def __init__(self, redis, service: FeatureService, project: str):
        super().__init__(redis, service, project, view_name=stream.stream_view_name)

    def read_raw(self, keys: dict[str, str]) -> dict[str, tuple[datetime | None, dict | None]]:
        replies = self.round_trip(*self._commands(keys), ("EXISTS", stream.STATUS_KEY))
        if not replies[-1]:
            raise FeaturesUnavailable("streaming consumer not running")
        return self._decode(replies[:-1])


# One reader per declared serving mode (skewless/modes.py).
_READERS = {r.mode: r for r in (MaterializedReader, ExactReader, StreamingReader)}
_missing = [name for name in modes.NAMES if name not in _READERS]
if _missing:
    raise RuntimeError(f"serving modes without a reader in serving/readers.py: {_missing}")


def make_reader(name: str, round_trip, service: FeatureService, project: str, state: ExactState):
    """The reader of serving mode ``name``, on the sidecar's Redis round trips or its state."""
    reader = _READERS[name]
    if reader is ExactReader:
        return ExactReader(state)
    return reader(round_trip, service, project)
