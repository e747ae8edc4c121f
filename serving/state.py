"""Exact mode's online state: each entity's recent raw events, kept in Redis.

One sorted set per entity key (``skewless:events:<entity>:<key>``), scored by event time in integer
microseconds since the epoch (exact in a double up to year 2255) and holding compact packed events.
At request time the features are computed from these events with ``skewless.evaluate`` - the same
code a property test holds equal to the dbt SQL - so exact mode can only differ from the offline
truth by events that had not arrived yet.

Bound: an entity keeps the events within the horizon of its groups in the feature service (the
longest span of events a window reads, ``FeatureGroup.horizon``, counted back from its newest
event) plus the newest event before that, which ``seconds_since_last`` needs however old it is.

Labels: events carry ``is_fraud`` and ``label_timestamp`` when known; label-based features count a
label only once ``label_timestamp <= t``. ``add_event`` is an upsert by (transaction_id, event
time), one atomic script per entity set (each set is one key, so it works on a Redis Cluster): a
label feed re-adds the event with its label; a scored transaction (label unknown) never overwrites
a known label.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from serving.redisio import RoundTrips, round_trips
from skewless.features import FEATURE_SERVICES, FeatureService
from skewless.schemas import ENTITY_KEYS, EVENT_ID, EVENT_KEYS, RAW_TRANSACTION_COLUMNS
from skewless.tasks import realtime_task

KEY_PREFIX = "skewless:events:"
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_NO_LABEL_TIME = -(2**63)
# event_us, label_us, amount, is_fraud (-1 unknown), len(customer_id), len(merchant_id)
_BODY = struct.Struct("<qqdb")  # event time, label time, amount, is_fraud
_ID_LENGTH = struct.Struct("<H")
# Offset of the is_fraud byte after the transaction-id prefix (1-based, for Lua's string.byte).
_IS_FRAUD_OFFSET = 8 + 8 + 8 + 1

# Upsert one event into one entity's set and trim it (atomic). One command per entity key, so each
# touches one hash slot (Redis Cluster). KEYS[1]: the entity set. ARGV: score, member, transaction
# prefix, has_label (0/1), only_existing (0/1: update the event only where it is already kept, never
# add it), trim cutoff: events scored below it go, except the newest of them.
_ADD_EVENT = f"""
local key, score, member, prefix, has_label = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local keep_old, found = false, false
for _, old in ipairs(redis.call('ZRANGEBYSCORE', key, score, score)) do
  if string.sub(old, 1, #prefix) == prefix then
    found = true
    if old ~= member then
      if has_label == '0' and string.byte(old, #prefix + {_IS_FRAUD_OFFSET}) ~= 255 then
        keep_old = true
      else
        redis.call('ZREM', key, old)
      end
    end
  end
end
if not keep_old and (found or ARGV[5] == '0') then redis.call('ZADD', key, score, member) end
local old = redis.call('ZCOUNT', key, '-inf', '(' .. ARGV[6])
if old > 1 then redis.call('ZREMRANGEBYRANK', key, 0, old - 2) end
return 1
"""

_TRIM = """
local old = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])
if old > 1 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, old - 2) end
return old
"""


def to_micros(value: datetime) -> int:
    """Naive UTC datetime -> integer microseconds since the epoch (exact)."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def pack(event: Mapping) -> bytes:
    """An event as a compact set member; it starts with the event-id prefix, then the times,
    amount and label, then each entity key (length-prefixed) in ``ENTITY_KEYS`` order."""
    event_id = str(event[EVENT_ID]).encode()
    keys = [str(event[key]).encode() for key in ENTITY_KEYS]
    label_time = event.get("label_timestamp")
    is_fraud = event.get("is_fraud")
    return b"".join(
        (
            _ID_LENGTH.pack(len(event_id)),
            event_id,
            _BODY.pack(
                to_micros(event["event_timestamp"]),
                _NO_LABEL_TIME if label_time is None else to_micros(label_time),
                float(event["amount"]),
                -1 if is_fraud is None else int(is_fraud),
            ),
            *(_ID_LENGTH.pack(len(key)) + key for key in keys),
        )
    )


def unpack(member: bytes) -> dict:
    (length,) = _ID_LENGTH.unpack_from(member, 0)
    pos = _ID_LENGTH.size + length
    event = {EVENT_ID: member[_ID_LENGTH.size : pos].decode()}
    event_us, label_us, amount, is_fraud = _BODY.unpack_from(member, pos)
    pos += _BODY.size
    for key in ENTITY_KEYS:
        (length,) = _ID_LENGTH.unpack_from(member, pos)
        pos += _ID_LENGTH.size
        event[key] = member[pos : pos + length].decode()
        pos += length
    event.update(
        event_timestamp=from_micros(event_us),
        amount=amount,
        is_fraud=None if is_fraud < 0 else is_fraud,
        label_timestamp=None if label_us == _NO_LABEL_TIME else from_micros(label_us),
    )
    return event


def _prefix(transaction_id: str) -> bytes:
    raw = str(transaction_id).encode()
    return _ID_LENGTH.pack(len(raw)) + raw


def state_key(entity: str, key: str, prefix: str = KEY_PREFIX) -> str:
    return f"{prefix}{entity}:{key}"


def _service(name: str | None) -> FeatureService:
    """A feature service by name; None: the realtime task's."""
    if name is None:
        return realtime_task().service
    return next(s for s in FEATURE_SERVICES if s.name == name)


class ExactState:
    """The per-entity event sets of one feature service's entities (default: the realtime task's
    service; fraud_v1: customer, merchant).

    ``prefix`` places the sets: exact mode uses ``KEY_PREFIX``; the stream consumer keeps its own
    state, with the same layout, under another prefix."""

    def __init__(
        self,
        redis,
        service: str | FeatureService | None = None,
        round_trip: RoundTrips | None = None,
        prefix: str = KEY_PREFIX,
    ):
        self.redis = redis  # a redis-py client
        self.prefix = prefix
        self.round_trip = round_trip or (round_trips(redis) if redis is not None else None)
        self.service = service if isinstance(service, FeatureService) else _service(service)
        retention: dict[str, timedelta] = {}
        join_keys: dict[str, str] = {}
        for group in self.service.groups:
            name = group.entity.name
            retention[name] = max(retention.get(name, group.horizon), group.horizon)
            join_keys[name] = group.entity.join_key
        self.retention = retention
        self.join_keys = join_keys  # entity name -> join key (a column of every event)

    # -- writing ---------------------------------------------------------------------------------
    def add_event(self, event: Mapping) -> None:
        """Upserts one event (transaction_id, customer_id, merchant_id, event_timestamp, amount,
        optional is_fraud / label_timestamp) into each entity's set."""
        self.round_trip(*self.add_event_commands(event))

    def add_event_commands(self, event: Mapping, *, only_existing: bool = False) -> list[tuple]:
        """add_event() as Redis commands (one per entity set), to send along with others in one
        round trip. ``only_existing``: update the event (a label) only in the sets that keep it
        already."""
        member = pack(event)
        at = event["event_timestamp"]
        score = str(to_micros(at))
        has_label = "1" if event.get("is_fraud") is not None else "0"
        transaction = _prefix(event[EVENT_ID])
        flags = (has_label, "1" if only_existing else "0")
        return [
            (
                "EVAL",
                _ADD_EVENT,
                1,
                state_key(entity, str(event[join_key]), self.prefix),
                score,
                member,
                transaction,
                *flags,
                str(to_micros(at - self.retention[entity])),
            )
            for entity, join_key in self.join_keys.items()
        ]

    def set_label(self, event: Mapping) -> None:
        """A label became known: the event (with its ids and event time) gets is_fraud and
        label_timestamp."""
        if event.get("is_fraud") is None or event.get("label_timestamp") is None:
            raise ValueError("set_label needs is_fraud and label_timestamp")
        self.add_event(event)

    def clear(self) -> int:
        """Deletes every entity set. Returns how many keys went."""
        deleted = 0
        batch: list[bytes] = []
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += self.redis.unlink(*batch)
                batch = []
        if batch:
            deleted += self.redis.unlink(*batch)
        return deleted

    def bootstrap(self, events_frame, *, as_of: datetime | None = None, clear: bool = True) -> dict:
        """Loads history events (a DataFrame with the canonical columns incl. is_fraud and
        label_timestamp; naive UTC times) and trims each set as of ``as_of`` (default: the newest
        event). ``clear`` first deletes the current state. The replay calls this before a day."""
        import pandas as pd

        if clear:
            self.clear()
        if events_frame is None or len(events_frame) == 0:
            return {"events": 0, "keys": 0}
        frame = events_frame.copy()
        for column in ("event_timestamp", "label_timestamp"):
            if column not in frame:
                frame[column] = pd.NaT
            values = pd.to_datetime(frame[column])
            if values.dt.tz is not None:
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            frame[column] = values
        if "is_fraud" not in frame:
            frame["is_fraud"] = None
        as_of = as_of or frame["event_timestamp"].max().to_pydatetime()
        columns = [*EVENT_KEYS, "event_timestamp", "amount"]
        records = frame[[*columns, "is_fraud", "label_timestamp"]].to_dict("records")
        per_key: dict[str, dict[bytes, int]] = defaultdict(dict)
        for record in records:
            record["event_timestamp"] = record["event_timestamp"].to_pydatetime()
            label_time = record["label_timestamp"]
            record["label_timestamp"] = None if pd.isna(label_time) else label_time.to_pydatetime()
            record["is_fraud"] = None if pd.isna(record["is_fraud"]) else int(record["is_fraud"])
            member = pack(record)
            score = to_micros(record["event_timestamp"])
            for entity, join_key in self.join_keys.items():
                per_key[state_key(entity, str(record[join_key]), self.prefix)][member] = score
        commands: list[tuple] = []
        for key, members in per_key.items():
            entity = key[len(self.prefix) :].split(":", 1)[0]
            cutoff = str(to_micros(as_of - self.retention[entity]))
            pairs = [part for member, score in members.items() for part in (score, member)]
            commands.append(("ZADD", key, *pairs))
            commands.append(("EVAL", _TRIM, 1, key, cutoff))
            if len(commands) >= 5000:
                self.round_trip(*commands)
                commands = []
        if commands:
            self.round_trip(*commands)
        return {"events": len(records), "keys": len(per_key), "as_of": as_of.isoformat()}

    # -- reading ---------------------------------------------------------------------------------
    def events(
        self, entity: str, key: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict]:
        """The entity's events with since <= event_timestamp < until (either bound optional),
        in event-time order."""
        low = "-inf" if since is None else to_micros(since)
        high = "+inf" if until is None else f"({to_micros(until)}"
        members = self.redis.zrangebyscore(state_key(entity, key, self.prefix), low, high)
        return [unpack(m) for m in members]

    def events_before(self, keys: Iterable[tuple[str, str]], at: datetime) -> list[list[dict]]:
        """For several (entity, key) pairs, all kept events strictly before ``at`` - one round
        trip. Their windows are cut by the evaluator."""
        high = f"({to_micros(at)}"
        commands = [
            ("ZRANGEBYSCORE", state_key(entity, key, self.prefix), "-inf", high)
            for entity, key in keys
        ]
        return [[unpack(m) for m in members] for members in self.round_trip(*commands)]


def history_frame(cfg, cutoff: datetime, *, by: str = "arrival", service: str | None = None):
    """The events the online state holds at ``cutoff``, from the warehouse (opened read-only):
    those that had arrived (``by="arrival"``) or happened (``by="event"``) before the cutoff, within
    the longest window of the service's groups, plus each entity's newest older event."""
    from skewless import warehouse

    if by not in ("arrival", "event"):
        raise ValueError(f"by={by!r}: expected 'arrival' or 'event'")
    state = ExactState(None, service)
    start = cutoff - max(state.retention.values())
    columns = ", ".join(RAW_TRANSACTION_COLUMNS)  # every staged column
    latest = [
        f"select {columns} from arrived where event_timestamp < $start qualify row_number() over "
        f"(partition by {key} order by event_timestamp desc, {EVENT_ID} desc) = 1"
        for key in sorted(set(state.join_keys.values()))
    ]
    sql = f"""
        with arrived as (
            select {columns} from stg_raw__transactions where {by}_timestamp < $cutoff
        )
        select {columns} from arrived where event_timestamp >= $start
        union
        {" union ".join(latest)}
        order by event_timestamp, {EVENT_ID}
    """
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        return con.execute(sql, {"cutoff": cutoff, "start": start}).fetchdf()
    finally:
        con.close()


def known_history(cfg, start: datetime):
    """(history, loaded): the events that had arrived before ``start`` (``history_frame``), and
    the same with only the labels known by then - what an online state holds at ``start``."""
    import pandas as pd

    history = history_frame(cfg, start, by="arrival")
    loaded = history.copy()
    unknown = loaded["label_timestamp"].isna() | (loaded["label_timestamp"] >= start)
    loaded["is_fraud"] = loaded["is_fraud"].astype("object").where(~unknown, None)
    loaded["label_timestamp"] = loaded["label_timestamp"].where(~unknown, pd.NaT)
    return history, loaded
