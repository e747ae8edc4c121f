"""A declaration of one's own (SKEWLESS_DECLARATION): one more entity, its daily features and a
batch task on them. Nothing else in the project names them."""

from datetime import timedelta

from skewless.vocabulary import (
    PREDICTIONS_SCHEMA,
    Agg,
    Aggregate,
    Entity,
    FeatureGroup,
    FeatureService,
    Grain,
    Serving,
    Task,
)

DEVICE = Entity("device", "device_id", "The phone or terminal a card is used from.")

DEVICE_DAILY_ACTIVITY = FeatureGroup(
    name="device_daily_activity",
    entity=DEVICE,
    grain=Grain.DAILY,
    windows=("7d", "30d"),
    aggregates=(
        Aggregate("device_daily_tx_count", Agg.COUNT, description="Transactions on the device"),
        Aggregate("device_daily_amount_sum", Agg.SUM, "amount", "Amount spent on the device"),
        Aggregate(
            "device_daily_seconds_since_last_tx",
            Agg.SECONDS_SINCE_LAST,
            description="Seconds since the device's latest transaction",
        ),
    ),
    description="Device activity per day at midnight UTC.",
)

DEVICE_V1 = FeatureService(
    "device_v1", "device_dormant_7d", (DEVICE_DAILY_ACTIVITY,), "Devices about to go quiet."
)

ENTITIES = (DEVICE,)
GROUPS = (DEVICE_DAILY_ACTIVITY,)
FEATURE_SERVICES = (DEVICE_V1,)
TASKS = (
    Task(
        name="device_dormant_7d",
        service=DEVICE_V1,
        description="The probability that a device sees no transaction in the next 7 days.",
        training_set="device_dormant_7d_training_set",
        label="is_dormant_7d",
        label_horizon=timedelta(days=7),
        serving=Serving.BATCH,
        ids=("device_id",),
        merge_keys=("device_id", "event_timestamp"),
        card="device_id",
        score_column="dormant_probability",
        predictions_table=f"{PREDICTIONS_SCHEMA}.device_dormant_scores",
        route="/v1/devices/<device_id>/dormant",
        active_within="30d",
    ),
)
