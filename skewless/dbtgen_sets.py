"""Writes the staging model and the training sets from the declaration (``skewless dbtgen``).

- ``stg_raw__transactions``: the raw contract typed and deduplicated; every declared entity's key
  is one of its columns (``skewless.schemas``).
- ``<task>`` training sets, one per declared task:
  - a realtime task: one row per labeled event, the state of each of its service's groups just
    before it (the per-event rows, not the snapshots), its label and when the label is known;
  - a batch task: one row per entity and day of its daily group, for entities with an event in
    the task's ``active_within`` window, labeled 1 when the entity has no event within the task's
    ``label_horizon`` after the row (churn); only rows whose horizon lies within the data.
"""

from __future__ import annotations

from pathlib import Path

from skewless import schemas
from skewless import tasks as T
from skewless.vocabulary import Agg, FeatureGroup, Task

STAGING_DIR = Path("models") / "staging"
TRAINING_DIR = Path("models") / "marts" / "training"
SQL_HEADER = "-- Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.\n"
YML_HEADER = "# Generated from skewless/features.py by `skewless dbtgen`. Do not edit by hand.\n"
STAGED = "stg_raw__transactions"
ARRIVAL_SUFFIX = "_as_arrived"  # the arrival-aware models (skewless/dbtgen_arrival.py)
_ID_TYPE = "{{ dbt.type_string() }}"


def render_staging() -> str:
    keys = "".join(f"        cast({key} as {_ID_TYPE}) as {key},\n" for key in schemas.ENTITY_KEYS)
    selected = "".join(f"    {key},\n" for key in schemas.ENTITY_KEYS)
    event_id = schemas.EVENT_ID
    return f"""{SQL_HEADER}-- Typed, deduplicated transactions with the raw contract's defaults filled in:
-- arrival_timestamp defaults to event_timestamp, label_timestamp to event_timestamp + label delay.
-- Portable SQL: engine differences go through the macros in macros/cross_engine.sql.

with source as (
    select * from {{{{ source('raw', 'transactions') }}}}
),

renamed as (
    select
        cast({event_id} as {_ID_TYPE}) as {event_id},
        cast(event_timestamp as timestamp) as event_timestamp,
{keys}        cast(amount as {{{{ type_double() }}}}) as amount,
        cast(is_fraud as {{{{ type_small_int() }}}}) as is_fraud,
        cast(coalesce(arrival_timestamp, event_timestamp) as timestamp) as arrival_timestamp,
        cast(coalesce(
            label_timestamp,
            event_timestamp + {{{{ interval_of(var('label_delay_seconds'), 'second') }}}}
        ) as timestamp) as label_timestamp,
        loaded_at
    from source
),

ranked as (
    select
        *,
        row_number() over (
            partition by {event_id} order by loaded_at, event_timestamp
        ) as occurrence
    from renamed
)

select
    {event_id},
    event_timestamp,
{selected}    amount,
    is_fraud,
    arrival_timestamp,
    label_timestamp
from ranked
where occurrence = 1
"""


def render_staging_schema() -> str:
    keys = "".join(
        f"      - name: {key}\n        data_tests: [not_null]\n" for key in schemas.ENTITY_KEYS
    )
    return f"""{YML_HEADER}version: 2

models:
  - name: {STAGED}
    description: "One row per transaction, typed, with arrival and label defaults filled in."
    columns:
      - name: {schemas.EVENT_ID}
        data_tests: [not_null, unique]
      - name: event_timestamp
        description: "When the transaction happened (UTC)."
        data_tests: [not_null]
{keys}      - name: amount
        data_tests: [not_null]
      - name: is_fraud
        description: "1 fraud, 0 genuine, null while unknown."
        data_tests:
          - accepted_values:
              arguments:
                values: [0, 1]
      - name: arrival_timestamp
        description: "When the event reached us; event_timestamp unless it arrived late."
        data_tests: [not_null]
      - name: label_timestamp
        description: "When the label became known; event_timestamp + label delay by default."
        data_tests: [not_null]
"""


def _seconds(delta) -> str:
    return f"{{{{ interval_of({int(delta.total_seconds())}, 'second') }}}}"


def _render_events_set(task: Task, suffix: str = "") -> str:
    """The labelled events with the task's features; ``suffix`` reads the feature models of that
    suffix (``_as_arrived``: the arrival-aware ones)."""
    event_id = schemas.EVENT_ID
    ids = [c for c in task.ids if c != event_id]
    events = ", ".join([event_id, "event_timestamp", *ids, "amount", task.label, "label_timestamp"])
    ctes = [
        f"events as (\n    select {events}\n    from {{{{ ref('{STAGED}') }}}}\n"
        f"    where {task.label} is not null\n)"
    ]
    columns = [f"events.{c}" for c in (event_id, "event_timestamp", *ids, "amount")]
    joins = []
    for group in task.service.groups:
        rows = f"{group.name}_rows"
        ctes.append(
            f"{rows} as (\n    select g.*\n    from {{{{ ref('{group.name}{suffix}') }}}} as g\n"
            "    where not g.is_snapshot\n)"
        )
        dropped = [group.entity.join_key, "event_timestamp", event_id, "is_snapshot"]
        columns.append(
            f"{{{{ star_except('{rows}', ref('{group.name}'),\n        {dropped!r}) }}}}"
        )
        joins.append(f"inner join {rows}\n    on events.{event_id} = {rows}.{event_id}")
    columns += [f"events.{task.label}", "events.label_timestamp"]
    groups = "".join(f"--   {g.name}\n" for g in task.service.groups)
    with_part = ",\n\n".join(ctes)
    select_part = ",\n    ".join(columns)
    join_part = "\n".join(joins)
    about = (
        "-- as the online path could have seen it: from the events that had arrived before it\n"
        "-- (the arrival-aware feature models).\n\n"
        if suffix
        else f"-- Feast's point-in-time retrieval over the {task.service.name} service must "
        "reproduce it.\n\n"
    )
    return (
        f"{SQL_HEADER}-- One row per labeled event, its label {task.label} and the state just before "
        f"it of\n{groups}{about}"
        f"with {with_part}\n\n"
        f"select\n    {select_part}\n"
        f"from events\n{join_part}\n"
    )


def active_feature(task: Task, group: FeatureGroup) -> str:
    """The group's event count over the task's ``active_within`` window (the training rows'
    filter); ValueError when the group declares no such count."""
    for aggregate, window, name in group.window_features():
        if aggregate.agg is Agg.COUNT and window == task.active_within and not aggregate.offset:
            return name
    raise ValueError(
        f"task {task.name!r}: group {group.name!r} has no {Agg.COUNT} over "
        f"active_within={task.active_within!r}"
    )


def _render_entity_set(task: Task) -> str:
    (group,) = task.service.groups
    key = group.entity.join_key
    horizon = _seconds(task.label_horizon)
    active = active_feature(task, group)
    return f"""{SQL_HEADER}-- One row per {group.entity.name} and day (midnight UTC) of {group.name}, for entities with an
-- event in the previous {task.active_within}, labeled {task.label}: no event within the next
-- {task.label_horizon.days} days. Only days whose horizon lies within the data are kept.

with daily as (
    select * from {{{{ ref('{group.name}') }}}}
),

events as (
    select {key} as entity_id, event_timestamp from {{{{ ref('{STAGED}') }}}}
),

observed as (
    select max(event_timestamp) as last_event_at from events
),

kept as (
    -- the training rows, before their label: active entities, horizon within the data
    select daily.*
    from daily
    cross join observed
    where
        daily.{active} > 0
        and daily.event_timestamp + {horizon} <= observed.last_event_at
),

days as (
    select {key} as entity_id, event_timestamp from kept
),

next_events as (
    {{{{ next_event_at('days', 'events') }}}}
)

select
    kept.*,
    (
        next_events.next_event_at is null
        or next_events.next_event_at >= kept.event_timestamp + {horizon}
    ) as {task.label}
from kept
inner join next_events
    on kept.{key} = next_events.entity_id
    and kept.event_timestamp = next_events.event_timestamp
"""


def render_training_set(task: Task) -> str:
    return _render_events_set(task) if task.realtime else _render_entity_set(task)


def render_training_schema() -> str:
    lines = [YML_HEADER.rstrip("\n"), "version: 2", "", "models:"]
    for task in T.TASKS.values():
        lines += [f"  - name: {task.training_set}"]
        if task.realtime:
            event_id = schemas.EVENT_ID
            lines += [
                f'    description: "Labeled events with the {task.service.name} features as of '
                'just before each one."',
                "    columns:",
                f"      - name: {event_id}",
                "        data_tests:",
                "          - not_null",
                "          - unique",
                "          - relationships:",
                "              arguments:",
                f"                to: ref('{STAGED}')",
                f"                field: {event_id}",
            ]
        else:
            key = task.entity.join_key
            lines += [
                f'    description: "Active {task.entity.name}-days with the {task.service.name} '
                f'features and the {task.label} label."',
                "    data_tests:",
                "      - unique_combination:",
                "          arguments:",
                f"            columns: [{key}, event_timestamp]",
                "    columns:",
                f"      - name: {key}",
                "        data_tests: [not_null]",
            ]
        lines += [f"      - name: {task.label}", "        data_tests: [not_null]", ""]
    return "\n".join(lines)


def expected_files() -> dict[Path, str]:
    files = {
        STAGING_DIR / f"{STAGED}.sql": render_staging(),
        STAGING_DIR / f"{STAGED}.yml": render_staging_schema(),
        TRAINING_DIR / "_training_sets.yml": render_training_schema(),
    }
    for task in T.TASKS.values():
        files[TRAINING_DIR / f"{task.training_set}.sql"] = render_training_set(task)
        if task.realtime:
            arrived = arrival_training_set(task)
            files[TRAINING_DIR / f"{arrived}.sql"] = _render_events_set(task, ARRIVAL_SUFFIX)
    return files


def arrival_training_set(task: Task) -> str:
    """The arrival-aware training set of a realtime task (``fraud_training_set_as_arrived``)."""
    return f"{task.training_set}{ARRIVAL_SUFFIX}"
