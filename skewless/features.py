"""The one declaration: entities, windowed features, feature services and tasks.

Every entity, feature and model is declared here once (in the words of ``skewless.vocabulary``).
What follows from it:

1. the dbt models that compute the offline truth (``skewless.dbtgen`` writes them),
2. the Feast entities, feature views and feature services (``feature_repo/`` reads this module),
3. the online computation of the sidecar (``skewless.evaluate``),
4. the models' training DAGs, batch scoring and the sidecar's routes (``skewless.tasks``).

A declaration of one's own extends this one: the Python file named by SKEWLESS_DECLARATION may
define ENTITIES, GROUPS, FEATURE_SERVICES and TASKS (sequences of vocabulary objects); they are
added to the ones below, and the whole is checked (``check``) before anything uses it.

Window semantics: every window w has a hop h (``HOPS``: 5 minutes for 1h, an hour for 1d and 7d, a
day for 30d and 90d). A feature evaluated at time t over window w covers the entity's events with
``event_timestamp`` in [floor(t - w, h), t), strictly before t, its tail aligned to the hop. An
aggregate declared with an ``offset`` d covers [floor(t - d - w, h), floor(t - d, h)) instead: the
window ends d before t. Label-based aggregations only count events whose ``label_timestamp`` <= t.
Adding a window is a one-line change: add it to a group's ``windows`` (and, for a new length, to
WINDOWS and HOPS).

Why aligned tails: exact online state keeps pre-aggregated tiles per hop instead of every raw event,
so its cost does not grow with an entity's traffic, and a window at any t is still exactly what dbt
computes: whole tiles plus the events since the last hop. A window reaches back between w and w + h.

Why label-based rates are shifted back: fraud labels arrive days after the transaction (7 days by
default). Over [t - w, t) with w <= the label delay, almost no label is known yet at t, so such a
window is empty in practice and the rate is null. Shifted back by the delay, the window ending
7 days before t holds transactions whose labels are known by t, so the rate carries the risk of a
terminal as it was a week ago, the way fraud teams compute it (the "delay period" of the
Reproducible Machine Learning for Credit Card Fraud Detection handbook, ch. 3.3). Labels still count
only once known: a label that arrives later than the usual delay counts from the moment it is
known, one known a microsecond after t does not count at t.

Labels do not all take the usual delay: a cardholder often reports a fraud within days, while a
genuine transaction is only confirmed once its dispute period is over. A window over label time
(``label_time_within``) catches those early labels: it counts the labels that became known in
[floor(t - w, h), t] (both ends in), of the entity's events before t labelled at most 30 days after
them (a label that late, past any dispute period, is not counted). Where every label takes the
same delay d it holds the same labels as the window shifted by d; where frauds are known sooner,
it sees a terminal's new frauds days before the shifted window does. The fraud service has both.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path

from skewless import settings
from skewless.vocabulary import (  # noqa: F401  (the vocabulary, re-exported for the declaration's users)
    HOPS,
    PREDICTIONS_SCHEMA,
    WINDOWS,
    Agg,
    Aggregate,
    AmountRatio,
    Entity,
    Feature,
    FeatureGroup,
    FeatureService,
    Grain,
    Ratio,
    Serving,
    Task,
    check_hops,
    window_hop,
    window_length,
)

CUSTOMER = Entity("customer", "customer_id", "A card holder (one card per customer).")
MERCHANT = Entity("merchant", "merchant_id", "A merchant terminal where cards are used.")
ENTITIES: tuple[Entity, ...] = (CUSTOMER, MERCHANT)


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
            "Fraud rate among the merchant's transactions",
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


# The models: one task each (skewless/tasks.py says how they are used).
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="fraud",
            service=FEATURE_SERVICES[0],
            description="Fraud at authorization: the probability that a transaction is fraud.",
            training_set="fraud_training_set",
            label="is_fraud",
            label_horizon=None,
            serving=Serving.REALTIME,
            ids=("transaction_id", "customer_id", "merchant_id"),
            merge_keys=("transaction_id",),
            card="customer_id",
            score_column="fraud_probability",
            predictions_table=f"{PREDICTIONS_SCHEMA}.fraud_scores",
            route="/v1/fraud/score",
            request_features=True,
            extra_columns=("label_timestamp",),
        ),
        Task(
            name="churn_30d",
            service=FEATURE_SERVICES[1],
            description="Churn: the probability that a customer makes no transaction in 30 days.",
            training_set="churn_training_set",
            label="is_churned_30d",
            label_horizon=timedelta(days=30),
            active_within="90d",
            serving=Serving.BATCH,
            ids=("customer_id",),
            merge_keys=("customer_id", "event_timestamp"),
            card="customer_id",
            score_column="churn_probability",
            predictions_table=f"{PREDICTIONS_SCHEMA}.churn_scores",
            route="/v1/customers/<customer_id>/churn",
            aliases=("churn",),
        ),
    )
}


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


def _twice(kind: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    twice = sorted({n for n in names if n in seen or seen.add(n)})
    if twice:
        raise ValueError(f"{kind} declared twice: {twice}")


def check(entities, groups, services, tasks) -> None:
    """ValueError naming what is wrong with a declaration: a name, join key, feature or route
    declared twice, a group's entity, a service's group or a task's service not declared, a
    window's hop that does not fit it, or an offset that is not a whole number of a window's hop."""
    check_hops(WINDOWS, HOPS)
    _twice("entity", (e.name for e in entities))
    _twice("join key", (e.join_key for e in entities))
    _twice("feature group", (g.name for g in groups))
    _twice("feature", (f for g in groups for f in g.feature_names))
    _twice("feature service", (s.name for s in services))
    _twice("task", (t.name for t in tasks))
    _twice("route", (t.route for t in tasks))
    for g in groups:
        if g.entity not in entities:
            raise ValueError(f"feature group {g.name!r}: entity {g.entity.name!r} not in ENTITIES")
        for aggregate in g.aggregates:  # the windows end on a tile: the SQL reads whole tiles
            for window in g.windows if aggregate.offset else ():
                if aggregate.shift % window_hop(window):
                    raise ValueError(
                        f"feature group {g.name!r}: {aggregate.name} offset={aggregate.offset!r}"
                        f" is not a whole number of window {window!r}'s hop"
                        f" ({window_hop(window)}): use a multiple of it"
                    )
    for s in services:
        for g in s.groups:
            if g not in groups:
                raise ValueError(f"feature service {s.name!r}: group {g.name!r} not in GROUPS")
    for t in tasks:
        if t.service not in services:
            raise ValueError(f"task {t.name!r}: service {t.service.name!r} not in FEATURE_SERVICES")


def load_extension(path: Path):
    """The module of a declaration file of one's own (its ENTITIES, GROUPS, FEATURE_SERVICES and
    TASKS extend this declaration). It builds with ``skewless.vocabulary`` and may refer to this
    declaration's objects (``from skewless.features import CUSTOMER``)."""
    if not path.is_file():
        raise FileNotFoundError(f"SKEWLESS_DECLARATION={str(path)!r}: no such file")
    spec = importlib.util.spec_from_file_location("skewless_declaration", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_extension_path = settings.get("SKEWLESS_DECLARATION")
if _extension_path is not None:
    _extension = load_extension(_extension_path)
    ENTITIES = (*ENTITIES, *getattr(_extension, "ENTITIES", ()))
    GROUPS = (*GROUPS, *getattr(_extension, "GROUPS", ()))
    FEATURE_SERVICES = (*FEATURE_SERVICES, *getattr(_extension, "FEATURE_SERVICES", ()))
    TASKS = {**TASKS, **{t.name: t for t in getattr(_extension, "TASKS", ())}}
check(ENTITIES, GROUPS, FEATURE_SERVICES, tuple(TASKS.values()))
