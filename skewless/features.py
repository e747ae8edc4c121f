"""The one feature declaration.

Every windowed feature is declared here once. Three things follow from it:

1. the dbt models that compute the offline truth (``skewless.dbtgen`` writes them),
2. the Feast feature views and feature services (``feature_repo/`` reads this module),
3. the online computation of the sidecar (``skewless.evaluate``).

Window semantics: a feature evaluated at time t over window w covers the entity's events with
``event_timestamp`` in [t - w, t), strictly before t. An aggregate declared with an ``offset`` d
covers [t - d - w, t - d) instead: the window ends d before t. Label-based aggregations only count
events whose ``label_timestamp`` <= t. Adding a window is a one-line change: add it to a group's
``windows``.

Why label-based rates are shifted back: fraud labels arrive days after the transaction (7 days by
default). Over [t - w, t) with w <= the label delay, almost no label is known yet at t, so such a
window is empty in practice and the rate is null. Shifted back by the delay, [t - 7d - w, t - 7d)
holds transactions whose labels are known by t, so the rate carries the risk of a terminal as it
was a week ago, the way fraud teams compute it (the "delay period" of the Reproducible Machine
Learning for Credit Card Fraud Detection handbook, ch. 3.3). Labels still count only once known:
a label that arrives later than the usual delay counts from the moment it is known, one known a
microsecond after t does not count at t.

Labels do not all take the usual delay: a cardholder often reports a fraud within days, while a
genuine transaction is only confirmed once its dispute period is over. A window over label time
(``label_time_within``) catches those early labels: it counts the labels that became known in
[t - w, t] (both ends in), of the entity's events in [t - within, t). Where every label takes the
same delay d it holds the same labels as the window shifted by d; where frauds are known sooner,
it sees a terminal's new frauds days before the shifted window does. The fraud service has both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

WINDOWS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}


def window_length(window: str) -> timedelta:
    try:
        return WINDOWS[window]
    except KeyError:
        raise KeyError(
            f"unknown window {window!r}; declare it in WINDOWS: {list(WINDOWS)}"
        ) from None


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


CUSTOMER = Entity("customer", "customer_id", "A card holder (one card per customer).")
MERCHANT = Entity("merchant", "merchant_id", "A merchant terminal where cards are used.")


@dataclass(frozen=True)
class Aggregate:
    """One aggregation of one column, evaluated over each of the group's windows."""

    name: str  # feature name stem; the window is appended: customer_tx_count_1h
    agg: Agg
    column: str | None = None
    description: str = ""
    # A key of WINDOWS: each window ends this long before t, [t - offset - w, t - offset).
    offset: str | None = None
    # A key of WINDOWS: the window runs over label time instead: labels that became known in
    # [t - w, t], of the entity's events in [t - within, t).
    label_time_within: str | None = None

    def __post_init__(self):
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

    def bounds(self, window: str) -> tuple[timedelta, timedelta]:
        """(start, end) of the events ``window`` reads, as durations before t: [t - start, t - end).
        A window over label time reads the events of ``label_time_within``."""
        if self.label_time_within:
            return window_length(self.label_time_within), timedelta(0)
        return self.shift + window_length(window), self.shift


@dataclass(frozen=True)
class Ratio:
    """A feature derived from two others of the same group: numerator / denominator * scale."""

    name: str
    numerator: str
    denominator: str
    scale: float = 1.0
    description: str = ""
    dtype: str = "float64"


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    description: str


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
        out = [Feature(name, a.dtype, _describe(a, w)) for a, w, name in self.window_features()]
        out.extend(Feature(r.name, r.dtype, r.description) for r in self.ratios)
        return out

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def horizon(self) -> timedelta:
        """How far back before t the group's windows read events (a window plus its offset, or
        the span of a window over label time, whichever is longest): what online state keeps."""
        return max(a.bounds(w)[0] for a, w, _ in self.window_features() if w is not None)


def _describe(aggregate: Aggregate, window: str | None) -> str:
    if window is None:
        scope = "before t"
    elif aggregate.offset:
        scope = f"over the {window} ending {aggregate.offset} before t"
    elif aggregate.label_time_within:
        scope = f"whose label became known in the {window} before t"
    else:
        scope = f"over the {window} before t"
    return f"{aggregate.description} {scope}".strip()


CUSTOMER_TRANSACTION_WINDOWS = FeatureGroup(
    name="customer_transaction_windows",
    entity=CUSTOMER,
    grain=Grain.TRANSACTION,
    windows=("1h", "1d", "7d", "30d"),
    aggregates=(
        Aggregate(
            "customer_tx_count", Agg.COUNT, description="Number of the customer's transactions"
        ),
        Aggregate("customer_amount_sum", Agg.SUM, "amount", "Total amount spent by the customer"),
        Aggregate(
            "customer_amount_avg", Agg.AVG, "amount", "Mean amount of the customer's transactions"
        ),
        Aggregate(
            "customer_merchant_distinct",
            Agg.COUNT_DISTINCT,
            "merchant_id",
            "Distinct merchants the customer paid",
        ),
        Aggregate(
            "customer_seconds_since_last_tx",
            Agg.SECONDS_SINCE_LAST,
            description="Seconds since the customer's previous transaction",
        ),
    ),
    description="Customer spending windows just before each transaction (fraud features).",
)

MERCHANT_TRANSACTION_WINDOWS = FeatureGroup(
    name="merchant_transaction_windows",
    entity=MERCHANT,
    grain=Grain.TRANSACTION,
    windows=("1d", "7d", "30d"),
    aggregates=(
        Aggregate(
            "merchant_tx_count", Agg.COUNT, description="Number of the merchant's transactions"
        ),
        Aggregate(
            "merchant_fraud_risk",
            Agg.LABELED_RATE,
            "is_fraud",
            "Fraud rate among the merchant's transactions whose label was known at t,",
            offset="7d",  # the usual label delay: see the module docstring
        ),
        Aggregate(
            "merchant_recent_label_fraud_rate",
            Agg.LABELED_RATE,
            "is_fraud",
            "Fraud rate among the merchant's transactions of the last 30d",
            label_time_within="30d",  # labels that arrive early count at once: see above
        ),
    ),
    description="Merchant volume, and fraud rates of the labels known at t (label delay aware).",
)

CUSTOMER_DAILY_ACTIVITY = FeatureGroup(
    name="customer_daily_activity",
    entity=CUSTOMER,
    grain=Grain.DAILY,
    windows=("30d", "90d"),
    aggregates=(
        Aggregate("customer_daily_tx_count", Agg.COUNT, description="Number of transactions"),
        Aggregate("customer_daily_amount_sum", Agg.SUM, "amount", "Total amount spent"),
        Aggregate(
            "customer_daily_seconds_since_last_tx",
            Agg.SECONDS_SINCE_LAST,
            description="Seconds since the customer's latest transaction",
        ),
    ),
    ratios=(
        Ratio(
            "customer_daily_tx_trend",
            numerator="customer_daily_tx_count_30d",
            denominator="customer_daily_tx_count_90d",
            scale=3.0,
            description="30-day transaction rate relative to the 90-day rate (1 = steady)",
        ),
    ),
    description="Customer activity per day at midnight UTC (churn features).",
)

GROUPS: tuple[FeatureGroup, ...] = (
    CUSTOMER_TRANSACTION_WINDOWS,
    MERCHANT_TRANSACTION_WINDOWS,
    CUSTOMER_DAILY_ACTIVITY,
)


@dataclass(frozen=True)
class FeatureService:
    """The features one model version consumes; its name is the registered model's name."""

    name: str
    model_name: str
    groups: tuple[FeatureGroup, ...]
    description: str


FEATURE_SERVICES: tuple[FeatureService, ...] = (
    FeatureService(
        "fraud_v1",
        "fraud",
        (CUSTOMER_TRANSACTION_WINDOWS, MERCHANT_TRANSACTION_WINDOWS),
        "Fraud at authorization: customer and merchant windows.",
    ),
    FeatureService(
        "churn_v1", "churn_30d", (CUSTOMER_DAILY_ACTIVITY,), "Churn in the next 30 days."
    ),
)


@dataclass(frozen=True)
class AmountRatio:
    """A request-time feature: the request's amount divided by one of the entity's window
    features (null when that is null, NaN or not > 0)."""

    name: str
    feature: str  # a window feature of the fraud service, e.g. customer_amount_avg_7d
    description: str


AMOUNT_RATIOS: tuple[AmountRatio, ...] = (
    AmountRatio(
        "amount_to_avg_7d",
        "customer_amount_avg_7d",
        "Amount divided by the customer's 7-day mean amount",
    ),
    AmountRatio(
        "amount_to_avg_30d",
        "customer_amount_avg_30d",
        "Amount divided by the customer's 30-day mean amount (the card's usual amount)",
    ),
)
NIGHT_UNTIL_HOUR = 6  # the last hour of the night, inclusive (as the fraud handbook's features)

# Request-time features: computed from the request itself (see request_features()).
REQUEST_FEATURES: tuple[Feature, ...] = (
    Feature("amount", "float64", "Amount of the scored transaction"),
    *(Feature(r.name, "float64", r.description) for r in AMOUNT_RATIOS),
    Feature("hour_of_day", "int64", "Hour of the transaction, UTC"),
    Feature("is_weekend", "int64", "1 if the transaction falls on Saturday or Sunday, UTC"),
    Feature("is_night", "int64", "1 if the transaction falls between 00:00 and 06:59, UTC"),
)


def _ratio(amount: float, base: float | None) -> float | None:
    if base is None or base != base or base <= 0:
        return None
    return amount / base


def request_features(amount: float, event_timestamp, features: Mapping) -> dict:
    """The one function deriving request-time features, used by training and serving alike.

    ``features`` holds the window features the amount ratios divide by (AMOUNT_RATIOS)."""
    return {
        "amount": float(amount),
        **{r.name: _ratio(amount, features[r.feature]) for r in AMOUNT_RATIOS},
        "hour_of_day": event_timestamp.hour,
        "is_weekend": int(event_timestamp.weekday() >= 5),
        "is_night": int(event_timestamp.hour <= NIGHT_UNTIL_HOUR),
    }


def request_features_frame(amount, event_timestamp, features):
    """request_features() over whole columns (pandas Series; ``features`` a DataFrame with the
    window features of AMOUNT_RATIOS), for training and batch scoring.

    A test holds it equal to request_features() row by row.
    """
    import numpy as np
    import pandas as pd

    amount = amount.astype("float64")
    timestamps = pd.to_datetime(event_timestamp)
    ratios = {}
    for ratio in AMOUNT_RATIOS:
        base = pd.to_numeric(features[ratio.feature], errors="coerce").astype("float64")
        ratios[ratio.name] = np.where(base > 0, amount / base.where(base > 0), np.nan)
    return pd.DataFrame(
        {
            "amount": amount,
            **ratios,
            "hour_of_day": timestamps.dt.hour.astype("int64"),
            "is_weekend": (timestamps.dt.dayofweek >= 5).astype("int64"),
            "is_night": (timestamps.dt.hour <= NIGHT_UNTIL_HOUR).astype("int64"),
        },
        index=amount.index,
    )


def group(name: str) -> FeatureGroup:
    for g in GROUPS:
        if g.name == name:
            return g
    raise KeyError(f"unknown feature group {name!r}; known: {[g.name for g in GROUPS]}")
