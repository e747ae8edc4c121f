"""The declaration's vocabulary: windows, entities, aggregates, feature groups and services, tasks.

``skewless/features.py`` declares the project's features and tasks with these; a declaration of
one's own (the file named by SKEWLESS_DECLARATION) extends it with the same words.

Window semantics: every window w has a hop h (``HOPS``). A feature evaluated at time t over window w
covers the entity's events with ``event_timestamp`` in [floor(t - w, h), t): the window ends just
before t and its tail is aligned to the hop, so it reaches back between w and w + h. An aggregate
declared with an ``offset`` d covers [floor(t - d - w, h), floor(t - d, h)): both ends aligned, d
before t. Label-based aggregations only count events whose ``label_timestamp`` <= t. An aggregate
declared with ``label_time_within`` W runs over label time: it counts the labels that became known
in [floor(t - w, h), t] (both ends in), of the entity's events before t whose label came at most W
after them.

Why aligned tails: online state can then keep pre-aggregated tiles per hop (count, sum, distinct
values, labels) instead of every raw event of the window. A window at any t is a few whole tiles
plus the events since the last hop, so the cost of serving it does not grow with an entity's
traffic, and it stays exactly equal to what dbt computes offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property

PREDICTIONS_SCHEMA = "predictions"

# The per-feature measures of the skew report that thresholds apply to (monitoring/skew_gate.py;
# defaults in monitoring/skew_thresholds.yaml, overrides per feature in the declaration).
SKEW_METRICS = ("match_rate", "js_divergence", "psi")


def _check_thresholds(name: str, thresholds) -> None:
    unknown = sorted(set(thresholds) - set(SKEW_METRICS))
    if unknown:
        raise ValueError(f"{name}: skew_thresholds {unknown}: expected {', '.join(SKEW_METRICS)}")
    for metric, limit in thresholds.items():
        if not isinstance(limit, int | float) or limit != limit or limit < 0:
            raise ValueError(f"{name}: skew_thresholds[{metric!r}]={limit!r}: expected >= 0")


WINDOWS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}


# Each window's hop: the tail of the window is aligned to it (see above). Every hop divides one day
# and every longer hop, and every window is a whole number of its hops: the tiles of online state
# then nest (a day of hours, an hour of 5-minute tiles), and at midnight (the daily grain) an
# aligned window is exactly [t - w, t).
HOPS: dict[str, timedelta] = {
    "1h": timedelta(minutes=5),
    "1d": timedelta(hours=1),
    "7d": timedelta(hours=1),
    "30d": timedelta(days=1),
    "90d": timedelta(days=1),
}

_EPOCH = datetime(1970, 1, 1)
_DAY = timedelta(days=1)


def window_length(window: str) -> timedelta:
    try:
        return WINDOWS[window]
    except KeyError:
        raise KeyError(
            f"unknown window {window!r}; declare it in WINDOWS: {list(WINDOWS)}"
        ) from None


def window_hop(window: str) -> timedelta:
    window_length(window)
    try:
        return HOPS[window]
    except KeyError:
        raise KeyError(f"window {window!r} has no hop; declare it in HOPS: {list(HOPS)}") from None


def check_hops(windows: dict[str, timedelta], hops: dict[str, timedelta]) -> None:
    """ValueError naming a window whose hop does not divide it or one day or is not whole minutes,
    or two hops that do not nest (each must divide every longer one)."""
    for window, length in windows.items():
        hop = hops.get(window)
        if hop is None:
            raise ValueError(f"window {window!r} has no hop; declare it in HOPS")
        if hop <= timedelta(0) or _DAY % hop or length % hop:
            raise ValueError(
                f"window {window!r}: hop {hop} must divide one day and the window ({length})"
            )
        if hop % timedelta(minutes=1):
            raise ValueError(f"window {window!r}: hop {hop} must be whole minutes")
    distinct = sorted(set(hops.values()))
    for short, long in zip(distinct, distinct[1:], strict=False):
        if long % short:
            raise ValueError(f"hops {short} and {long} do not nest: {short} must divide {long}")


def floor_to(at: datetime, hop: timedelta) -> datetime:
    """``at`` (naive UTC) rounded down to a multiple of ``hop`` since the epoch (exact, to the
    microsecond)."""
    return at - (at - _EPOCH) % hop


class Agg(StrEnum):
    COUNT = "count"  # number of events
    SUM = "sum"  # sum of a column (0 when empty)
    AVG = "avg"  # mean of a column (null when empty)
    COUNT_DISTINCT = "count_distinct"  # distinct values of a column
    LABELED_RATE = "labeled_rate"  # mean of a 0/1 label over events whose label is known at t
    SECONDS_SINCE_LAST = "seconds_since_last"  # t minus the latest event before t (null if none)


class Grain(StrEnum):
    # One row per event (the state just before it) plus one snapshot row per entity at the cutoff.
    TRANSACTION = "transaction"
    # One row per entity and day, at midnight UTC, from the day after its first event to the cutoff.
    DAILY = "daily"


@dataclass(frozen=True)
class Entity:
    name: str
    join_key: str
    description: str


@dataclass(frozen=True)
class Aggregate:
    """One aggregation of one column, evaluated over each of the group's windows."""

    name: str  # feature name stem; the window is appended: customer_tx_count_1h
    agg: Agg
    column: str | None = None
    description: str = ""
    # A key of WINDOWS, a whole number of each window's hop: each window ends this long before t,
    # [floor(t - offset - w, hop), floor(t - offset, hop)).
    offset: str | None = None
    # A key of WINDOWS: the window runs over label time instead: labels that became known in
    # [floor(t - w, hop), t], of the entity's events before t labelled at most this long after them.
    label_time_within: str | None = None
    # Skew thresholds of this aggregate's features that replace the defaults, e.g.
    # {"match_rate": 0.9} for a feature known to be served a little stale.
    skew_thresholds: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        _check_thresholds(self.name, self.skew_thresholds)
        for option in ("offset", "label_time_within"):
            value = getattr(self, option)
            if value is None:
                continue
            window_length(value)  # a declared length, or a KeyError naming the known ones
            if self.agg is not Agg.LABELED_RATE:
                raise ValueError(
                    f"{self.name}: {option} applies to label-based rates ({Agg.LABELED_RATE})"
                    f" only, not {self.agg}"
                )
        if self.offset and self.label_time_within:
            raise ValueError(f"{self.name}: offset and label_time_within exclude each other")

    @property
    def dtype(self) -> str:
        return "int64" if self.agg in (Agg.COUNT, Agg.COUNT_DISTINCT) else "float64"

    @property
    def windowed(self) -> bool:
        return self.agg is not Agg.SECONDS_SINCE_LAST

    @property
    def shift(self) -> timedelta:
        """How long before t each window ends (0 without an offset)."""
        return window_length(self.offset) if self.offset else timedelta(0)

    @property
    def label_time(self) -> bool:
        return self.label_time_within is not None

    @property
    def label_within(self) -> timedelta:
        """How long after its event a label may come and still count (windows over label time)."""
        return window_length(self.label_time_within)

    def bounds(self, window: str) -> tuple[timedelta, timedelta]:
        """(start, end) as durations before t: the events ``window`` reads at any t lie in
        [t - start, t - end) (the hop-aligned window is inside; over label time, the events of
        the labels that became known in it)."""
        reach = self.shift + window_length(window) + window_hop(window)
        return reach + (self.label_within if self.label_time else timedelta(0)), self.shift

    def event_range(self, window: str, at: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the event times ``window`` covers at ``at`` (for a window over label
        time: the label times, both ends in)."""
        hop = window_hop(window)
        start = floor_to(at - self.shift - window_length(window), hop)
        return start, floor_to(at - self.shift, hop) if self.offset else at


@dataclass(frozen=True)
class Ratio:
    """A feature derived from two others of the same group: numerator / denominator * scale."""

    name: str
    numerator: str
    denominator: str
    scale: float = 1.0
    description: str = ""
    dtype: str = "float64"
    skew_thresholds: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        _check_thresholds(self.name, self.skew_thresholds)


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    description: str
    skew_thresholds: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class FeatureGroup:
    """Features of one entity at one grain: one dbt model, one Feast feature view."""

    name: str
    entity: Entity
    grain: Grain
    windows: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]
    ratios: tuple[Ratio, ...] = ()
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def feature_name(self, aggregate: Aggregate, window: str | None) -> str:
        return f"{aggregate.name}_{window}" if window else aggregate.name

    def window_features(self) -> list[tuple[Aggregate, str | None, str]]:
        """(aggregate, window or None, feature name) for every computed feature, in order."""
        out = []
        for aggregate in self.aggregates:
            windows = self.windows if aggregate.windowed else (None,)
            out.extend((aggregate, w, self.feature_name(aggregate, w)) for w in windows)
        return out

    @property
    def features(self) -> list[Feature]:
        out = [
            Feature(name, a.dtype, _describe(a, w), a.skew_thresholds)
            for a, w, name in self.window_features()
        ]
        out.extend(Feature(r.name, r.dtype, r.description, r.skew_thresholds) for r in self.ratios)
        return out

    @property
    def feature_names(self) -> list[str]:
        return list(self._names)

    @cached_property
    def _names(self) -> tuple[str, ...]:
        """The feature names, in order, computed once (exact mode reads them on every request)."""
        return (*(name for _, _, name in self.window_features()), *(r.name for r in self.ratios))

    @property
    def horizon(self) -> timedelta:
        """How far back before t the group's windows read events (a window plus its offset and
        hop; over label time, plus how late a label may come), whichever is longest: the history
        that fills online state."""
        return max(a.bounds(w)[0] for a, w, _ in self.window_features() if w is not None)


def _describe(aggregate: Aggregate, window: str | None) -> str:
    if window is None:
        return f"{aggregate.description} before t".strip()
    if aggregate.offset:
        scope = f"over the {window} ending {aggregate.offset} before t"
    elif aggregate.label_time:
        scope = f"whose label became known in the {window} before t"
    else:
        scope = f"over the {window} before t"
    return f"{aggregate.description} {scope}, aligned to {_span(window_hop(window))}".strip()


def _span(delta: timedelta) -> str:
    """5 minutes, 1 hour, 1 day: a hop in words."""
    for unit, length in (
        ("day", _DAY),
        ("hour", timedelta(hours=1)),
        ("minute", timedelta(minutes=1)),
    ):
        if delta % length == timedelta(0):
            count = delta // length
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return str(delta)  # pragma: no cover - hops are whole minutes


@dataclass(frozen=True)
class FeatureService:
    """The features one model version consumes; its name is the registered model's name."""

    name: str
    model_name: str
    groups: tuple[FeatureGroup, ...]
    description: str


@dataclass(frozen=True)
class AmountRatio:
    """A request-time feature: the request's amount divided by one of the entity's window
    features (null when that is null, NaN or not > 0)."""

    name: str
    feature: str  # a window feature of the fraud service, e.g. customer_amount_avg_7d
    description: str


class Serving(StrEnum):
    REALTIME = "realtime"
    BATCH = "batch"


@dataclass(frozen=True)
class Task:
    """One model: its features, labels, keys and how its predictions are served."""

    name: str  # registered model name, models/config.yaml key, CLI choice, DAG train_<name>
    service: FeatureService
    description: str
    training_set: str  # dbt model with the labels and entity keys
    label: str  # 0/1 column of the training set
    # When a row's label is known: the training set's ``label_timestamp`` column (None here), or
    # this long after the row's time (the label looks that far ahead).
    label_horizon: timedelta | None
    serving: Serving
    ids: tuple[str, ...]  # entity / row ids, in the order of ``keys``
    merge_keys: tuple[str, ...]  # identify one training row (to join Feast's answer back)
    card: str  # the id investigators review: card precision@k ranks these per day
    score_column: str  # the probability's column in the predictions table and responses
    predictions_table: str
    route: str  # the sidecar's route: POST (realtime) or GET by entity id (batch)
    # batch: the training rows are the entities with an event in this window (a key of WINDOWS
    # over which the task's group counts events)
    active_within: str | None = None
    request_features: bool = False  # the request-time features (REQUEST_FEATURES) too
    extra_columns: tuple[str, ...] = ()  # training-set columns kept beside the keys
    aliases: tuple[str, ...] = ()  # other names accepted by the CLI
    # A task declared by a predictive query (``skewless predict --train``, models/query_tasks.py):
    # its target as written in the query, and the declared task of the same entity whose feature
    # service, training rows and model configuration it shares. None for the declaration's own.
    query: str | None = None
    based_on: str | None = None

    def __post_init__(self):
        grains = {g.grain for g in self.service.groups}
        expected = Grain.TRANSACTION if self.serving is Serving.REALTIME else Grain.DAILY
        if grains != {expected}:
            raise ValueError(
                f"task {self.name!r}: {self.serving} tasks need {expected} feature groups, "
                f"service {self.service.name!r} has {sorted(grains)}"
            )
        if self.serving is Serving.BATCH and (self.label_horizon is None or not self.active_within):
            raise ValueError(
                f"task {self.name!r}: a batch task needs a label_horizon and active_within"
            )
        if self.serving is Serving.BATCH and len(self.service.groups) != 1:
            raise ValueError(f"task {self.name!r}: a batch task scores from one daily group")
        if (
            self.serving is Serving.BATCH
            and self.query is None
            and f"<{self.entity.join_key}>" not in self.route
        ):
            raise ValueError(
                f"task {self.name!r}: route {self.route!r} must hold <{self.entity.join_key}>"
            )

    @property
    def realtime(self) -> bool:
        return self.serving is Serving.REALTIME

    @property
    def entity(self) -> Entity:
        """What one batch prediction is about: the entity of the task's daily group."""
        return self.service.groups[0].entity

    @property
    def scores_key_prefix(self) -> str:
        """Redis hash per entity holding a batch task's latest score (``<prefix><entity id>``)."""
        return f"skewless:{self.name}:"

    def stored_score(self, fields: dict[bytes, bytes]) -> dict | None:
        """One entity's hash under ``scores_key_prefix`` (HGETALL's reply, as batch scoring
        writes it) as {score column: float, model_version, score_date}; None when empty."""
        if not fields:
            return None
        values = {k.decode(): v.decode() for k, v in fields.items()}
        return {
            self.score_column: float(values[self.score_column]),
            "model_version": values["model_version"],
            "score_date": values["score_date"],
        }

    @property
    def group_features(self) -> list[str]:
        return [name for g in self.service.groups for name in g.feature_names]
