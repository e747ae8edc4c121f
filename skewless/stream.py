"""``streaming`` mode's event stream: its keys, entries and views, and the consumer's status.

Producers append to the stream ``skewless:{stream}:events`` (``xadd_command``): the sidecar, for
every scored transaction (in the round trip that writes the serving log), and ``skewless replay``,
for earlier days' events arriving late, labels as they become known, and a ``reset`` before a day.
The consumer (``serving/stream_consumer.py``, ``skewless stream-consumer``) reads it, keeps the
windows and pushes them through the Feast push sources ``<group>_push`` into the views
``<group>_stream``, and records its watermark and counters in the status hash
``skewless:{stream}:consumer`` that the sidecar checks (``read_status``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from skewless.features import FeatureGroup
from skewless.schemas import EVENT_KEYS
from skewless.tasks import realtime_task

# The consumer changes the stream, its held set and its status in one transaction: the hash tag
# {stream} keeps the three in one slot of a Redis Cluster.
STREAM = "skewless:{stream}:events"
STATUS_KEY = "skewless:{stream}:consumer"
HELD_KEY = "skewless:{stream}:held"
DEFAULT_MAXLEN = 1_000_000
KINDS = ("event", "label", "reset")


def streamed_groups() -> tuple[FeatureGroup, ...]:
    """The feature groups the stream feeds: those of the realtime task's service."""
    return realtime_task().service.groups


def stream_view_name(group_name: str) -> str:
    return f"{group_name}_stream"


def push_source_name(group_name: str) -> str:
    return f"{group_name}_push"


# -- producing ------------------------------------------------------------------------------------


def iso_time(value: datetime) -> str:
    return value.isoformat()


def entry_fields(event: Mapping, *, kind: str = "event", arrival: datetime | None = None) -> dict:
    """One stream entry (strings): the event's ids, amount, event time, arrival (default: the
    event time) and, for a label, is_fraud and label_timestamp."""
    if kind not in ("event", "label"):
        raise ValueError(f"kind={kind!r}: expected 'event' or 'label'")
    fields = {
        "kind": kind,
        **{key: str(event[key]) for key in EVENT_KEYS},
        "amount": repr(float(event["amount"])),
        "event_timestamp": iso_time(event["event_timestamp"]),
        "arrival_timestamp": iso_time(arrival or event["event_timestamp"]),
    }
    if kind == "label":
        if event.get("is_fraud") is None or event.get("label_timestamp") is None:
            raise ValueError("a label entry needs is_fraud and label_timestamp")
        fields["is_fraud"] = str(int(event["is_fraud"]))
        fields["label_timestamp"] = iso_time(event["label_timestamp"])
    return fields


def xadd_command(
    event: Mapping,
    *,
    kind: str = "event",
    arrival: datetime | None = None,
    maxlen: int = DEFAULT_MAXLEN,
) -> tuple:
    """XADD of one event or label entry, to send along with other commands in one round trip."""
    fields = [
        part for item in entry_fields(event, kind=kind, arrival=arrival).items() for part in item
    ]
    return ("XADD", STREAM, "MAXLEN", "~", maxlen, "*", *fields)


def reset_command(as_of: datetime, *, maxlen: int = DEFAULT_MAXLEN) -> tuple:
    """XADD of a reset: the consumer restarts from the state as of ``as_of`` (a day's start)."""
    return ("XADD", STREAM, "MAXLEN", "~", maxlen, "*", "kind", "reset", "as_of", iso_time(as_of))


def decode_entry(fields: Mapping) -> dict:
    """A stream entry (bytes or str fields) as a dict: kind, and the event with datetimes."""
    raw = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"stream entry field kind={kind!r}: expected one of {KINDS}")
    if kind == "reset":
        return {"kind": kind, "as_of": datetime.fromisoformat(raw["as_of"])}
    event = event_from_text(raw, labeled=kind == "label")
    arrival = raw.get("arrival_timestamp")
    return {
        "kind": kind,
        "event": event,
        "arrival": datetime.fromisoformat(arrival) if arrival else event["event_timestamp"],
    }


def event_from_text(raw: Mapping, *, labeled: bool) -> dict:
    """An event from its text fields (an entry's, or a held member's JSON): ids, amount, event
    time and, when ``labeled``, is_fraud and label_timestamp."""
    event = {
        **{key: raw[key] for key in EVENT_KEYS},
        "amount": float(raw["amount"]),
        "event_timestamp": datetime.fromisoformat(raw["event_timestamp"]),
    }
    if labeled:
        event["is_fraud"] = int(raw["is_fraud"])
        event["label_timestamp"] = datetime.fromisoformat(raw["label_timestamp"])
    return event


def as_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Status:
    watermark: datetime | None = None
    read: int = 0
    applied: int = 0
    dropped_late: int = 0
    pushed_rows: int = 0
    resets: int = 0
    reset_id: str = ""

    def fields(self) -> dict[str, str]:
        return {
            "watermark": "" if self.watermark is None else iso_time(self.watermark),
            "read": str(self.read),
            "applied": str(self.applied),
            "dropped_late": str(self.dropped_late),
            "pushed_rows": str(self.pushed_rows),
            "resets": str(self.resets),
            "reset_id": self.reset_id,
        }

    @classmethod
    def load(cls, raw: Mapping) -> Status:
        values = {as_text(k): as_text(v) for k, v in raw.items()}
        mark = values.get("watermark")
        return cls(
            watermark=datetime.fromisoformat(mark) if mark else None,
            **{
                name: int(values.get(name) or 0)
                for name in ("read", "applied", "dropped_late", "pushed_rows", "resets")
            },
            reset_id=values.get("reset_id", ""),
        )


def read_status(redis_client) -> dict | None:
    """The consumer's status hash as a dict of strings, or None if it has never run."""
    raw = redis_client.hgetall(STATUS_KEY)
    return {as_text(k): as_text(v) for k, v in raw.items()} or None
