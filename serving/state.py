"""Exact mode's online state: each entity's windows as pre-aggregated tiles, kept in Redis.

Per entity key, three keys sharing one hash tag (so on a Redis Cluster an entity's keys live in one
slot and its writes stay atomic): ``<prefix>{<entity>:<key>}:tiles``, a hash of tiles
(``skewless.tiles``: per tile length a ring of slots, a newer tile replacing an older one) and the
entity's two newest event times; ``:raw``, the raw events of the lateness allowance
(``SKEWLESS_EXACT_LATENESS_SECONDS``, 6 hours by default) behind the entity's newest time and of
the newest minute before it (the last event before a late request: seconds since the last), one
sorted-set member per minute (scored by the minute's start in integer microseconds since the
epoch) holding that minute's events, each with only what its tiles aggregate (``Codec``);
``:labels``, the labels that became known in that span, per minute of label time the same way. A
request reads a fixed number of tiles plus the raw events from t's own minute on (and those of
the latest minute before it), and
``Layout.evaluate`` (held equal to the dbt SQL's evaluator by a property test) computes the
features: the work and memory of an entity do not grow with its traffic, and exact mode differs
from the offline truth only by events that had not arrived yet, or for a request more than the
lateness allowance behind the entity's newest event or label.

Writes, one atomic script per entity: an event goes into its tiles and the raw set; one already
among the raw ones (same id and time) is not added twice, and a scored transaction (label
unknown) never replaces a known label. A label (``only_existing``, or an event that comes back
labelled) goes into the label counts of its event's tiles and into the tiles over label time. A
label is final: while its event is among the raw ones, a second label for it is ignored; once the
event is older than the lateness allowance its label is counted without that check (a second
label for it would count twice: send one label per event).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgpack

from serving.redisio import RoundTrips, round_trips, script
from skewless import settings
from skewless.features import FEATURE_SERVICES, FeatureGroup, FeatureService
from skewless.schemas import EVENT_ID, EVENT_KEYS, RAW_TRANSACTION_COLUMNS
from skewless.tasks import realtime_task
from skewless.tiles import MINUTE_US, Layout, Tile, apply_updates, minute_of, newest_after
from skewless.tiles import micros as to_micros

KEY_PREFIX = "skewless:events:"
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_LENGTH = struct.Struct("<H")  # a frame's length, an event id's length
_TIME = struct.Struct("<q")
_NEWEST, _PREVIOUS = "t1", "t0"  # the entity's newest event time and the newest one before it

# One event or label into one entity's keys (atomic; the three keys share a hash slot). Raw events
# and labels are kept per minute: one sorted-set member per minute (scored by the minute's start),
# the frames of that minute's events (or labels) one after the other, each a 2-byte length and its
# body. A raw event's body starts with its key (id and event time) and a flag byte (1: labelled).
# KEYS: tiles, raw, labels. ARGV: event time, the event's raw frame, its key, has_label (0/1),
# only_existing (0/1: the label of an event that arrived before, never the event itself), the
# event's tile updates and its label's (msgpack), label time, lateness (us), the event's minute,
# the label's minute, the label's frame (empty: the entity keeps no labels). Minutes older than the lateness before the newest time
# ("w"), to the minute, go.
_ADD = f"""
local tiles, raw, labels = KEYS[1], KEYS[2], KEYS[3]
local score, frame, key = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local has_label, only_existing = ARGV[4] == '1', ARGV[5] == '1'
local minute, label_minute = ARGV[10], ARGV[11]
local function apply(packed)
  for _, u in ipairs(cmsgpack.unpack(packed)) do
    local name, index, adds, distinct, newest = u[1], u[2], u[3], u[4], u[5]
    local stored = redis.call('HGET', tiles, name)
    local tile = stored and cmsgpack.unpack(stored)
    if not tile or tile.i < index then tile = {{i = index}} end
    if tile.i == index then
      for k, v in pairs(adds) do tile[k] = (tile[k] or 0) + v end
      for k, v in pairs(distinct) do
        local counts = tile[k] or {{}}
        counts[v] = (counts[v] or 0) + 1
        tile[k] = counts
      end
      if newest then tile.m = math.max(tile.m or newest, newest) end
      redis.call('HSET', tiles, name, cmsgpack.pack(tile))
    end
  end
end
local function put(set, at, old, new)
  if old then redis.call('ZREM', set, old) end
  redis.call('ZADD', set, at, new)
end
local function add_label()
  if ARGV[12] == '' then return end  -- no label rate of this entity reads it
  local old = redis.call('ZRANGEBYSCORE', labels, label_minute, label_minute)[1]
  put(labels, label_minute, old, (old or '') .. ARGV[12])
end
local bucket = redis.call('ZRANGEBYSCORE', raw, minute, minute)[1]
local at, length = nil, nil
if bucket then
  local pos = 1
  while pos <= #bucket do
    local n = string.byte(bucket, pos) + 256 * string.byte(bucket, pos + 1)
    if string.sub(bucket, pos + 2, pos + 1 + #key) == key then at, length = pos, n break end
    pos = pos + 2 + n
  end
end
if at then
  if has_label and string.byte(bucket, at + 2 + #key) == 0 then
    apply(ARGV[7])
    local new = string.sub(bucket, 1, at - 1) .. frame .. string.sub(bucket, at + 2 + length)
    put(raw, minute, bucket, new)
    add_label()
  end
elseif only_existing then
  if has_label then
    apply(ARGV[7])
    add_label()
  end
else
  apply(ARGV[6])
  put(raw, minute, bucket, (bucket or '') .. frame)
  if has_label then add_label() end
  local last = redis.call('HGET', tiles, '{_NEWEST}')
  local previous = redis.call('HGET', tiles, '{_PREVIOUS}')
  if not last or score > tonumber(last) then
    redis.call('HSET', tiles, '{_NEWEST}', ARGV[1])
    if last then redis.call('HSET', tiles, '{_PREVIOUS}', last) end
  elseif score < tonumber(last) and (not previous or score > tonumber(previous)) then
    redis.call('HSET', tiles, '{_PREVIOUS}', ARGV[1])
  end
end
local mark = score
if has_label then mark = math.max(mark, tonumber(ARGV[8])) end
local stored_mark = redis.call('HGET', tiles, 'w')
if stored_mark and tonumber(stored_mark) > mark then
  mark = tonumber(stored_mark)
else
  redis.call('HSET', tiles, 'w', string.format('%d', mark))
end
local cut = mark - tonumber(ARGV[9])
cut = cut - cut % {MINUTE_US}
-- raw events: the newest minute before the cut stays (the last event before a late request)
local older = redis.call('ZREVRANGEBYSCORE', raw, '(' .. string.format('%d', cut), '-inf',
  'WITHSCORES', 'LIMIT', 0, 1)
if older[2] then
  redis.call('ZREMRANGEBYSCORE', raw, '-inf', '(' .. older[2])
end
redis.call('ZREMRANGEBYSCORE', labels, '-inf', '(' .. string.format('%d', cut))
return 1
"""
_ADD_COMMAND = script(_ADD)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _framed(body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise ValueError(f"an event of {len(body)} bytes: the online state keeps up to 65535")
    return _LENGTH.pack(len(body)) + body


def _bodies(buckets: Iterable[bytes]) -> Iterator[bytes]:
    """The bodies of the frames in ``buckets`` (sorted-set members, one per minute), in order."""
    for bucket in buckets:
        pos = 0
        while pos < len(bucket):
            (length,) = _LENGTH.unpack_from(bucket, pos)
            yield bucket[pos + 2 : pos + 2 + length]
            pos += 2 + length


class Codec:
    """How one entity's raw events and labels are kept: an event with its id, event time, label
    time and the ``columns`` its tiles aggregate; a label with its event time, label time and the
    ``label_columns`` counted over label time or as label rates."""

    def __init__(self, layout: Layout):
        self.label_columns = tuple(
            sorted({*layout.label_columns, *(c for c, _ in layout.label_time_keys)})
        )
        self.columns = tuple(
            sorted({*layout.sum_columns, *layout.distinct_columns, *self.label_columns})
        )

    @staticmethod
    def key(event: Mapping) -> bytes:
        """The start of an event's body: its id (length-prefixed) and event time."""
        event_id = str(event[EVENT_ID]).encode()
        return (
            _LENGTH.pack(len(event_id)) + event_id + _TIME.pack(to_micros(event["event_timestamp"]))
        )

    def event_frame(self, event: Mapping) -> bytes:
        label_time = event.get("label_timestamp")
        labelled = label_time is not None and event.get("is_fraud") is not None
        payload = [
            to_micros(label_time) if labelled else None,
            *(event.get(c) for c in self.columns),
        ]
        return _framed(self.key(event) + bytes((labelled,)) + msgpack.packb(payload))

    def label_frame(self, event: Mapping) -> bytes:
        times = [to_micros(event["event_timestamp"]), to_micros(event["label_timestamp"])]
        return _framed(msgpack.packb(times + [event.get(c) for c in self.label_columns]))

    def events(self, buckets: Iterable[bytes]) -> list[dict]:
        out = []
        for body in _bodies(buckets):
            (length,) = _LENGTH.unpack_from(body, 0)
            pos = 2 + length
            (event_us,) = _TIME.unpack_from(body, pos)
            label_us, *values = msgpack.unpackb(body[pos + 9 :])
            event = {
                EVENT_ID: body[2:pos].decode(),
                "event_timestamp": from_micros(event_us),
                "label_timestamp": None if label_us is None else from_micros(label_us),
            }
            event.update(zip(self.columns, values, strict=True))
            out.append(event)
        return out

    def labels(self, buckets: Iterable[bytes]) -> list[dict]:
        out = []
        for body in _bodies(buckets):
            event_us, label_us, *values = msgpack.unpackb(body)
            label = {
                "event_timestamp": from_micros(event_us),
                "label_timestamp": from_micros(label_us),
            }
            label.update(zip(self.label_columns, values, strict=True))
            out.append(label)
        return out

    def buckets(self, frames: Iterable[tuple[int, bytes]]) -> list:
        """ZADD arguments (minute, bucket, ...) for (time in us, frame) pairs."""
        by_minute: dict[int, list[bytes]] = defaultdict(list)
        for at_us, frame in frames:
            by_minute[minute_of(at_us)].append(frame)
        return [
            part
            for minute, parts in sorted(by_minute.items())
            for part in (minute, b"".join(parts))
        ]


def state_key(entity: str, key: str, prefix: str = KEY_PREFIX, part: str = "tiles") -> str:
    """One of an entity's keys (``tiles``, ``raw`` or ``labels``), hash-tagged by entity."""
    return f"{prefix}{{{entity}:{key}}}:{part}"


def _service(name: str | None) -> FeatureService:
    """A feature service by name; None: the realtime task's."""
    if name is None:
        return realtime_task().service
    return next(s for s in FEATURE_SERVICES if s.name == name)


def _us(delta: timedelta) -> int:
    return delta // _MICROSECOND


@dataclass
class EntityState:
    """What one entity's keys hold for a request at t: the tiles it reads, the raw events and
    labels from t's minute on, its two newest event times."""

    tiles: dict[str, Tile] = field(default_factory=dict)
    head: list[dict] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    newest: tuple[datetime | None, datetime | None] = (None, None)
    before: list[dict] = field(default_factory=list)  # raw events of the last minute before t's

    @property
    def empty(self) -> bool:
        """The entity has no event at all."""
        return self.newest[0] is None


class ExactState:
    """The per-entity tiles of one feature service's entities (default: the realtime task's
    service; fraud_v1: customer, merchant).

    ``prefix`` places the keys: exact mode uses ``KEY_PREFIX``; the stream consumer keeps its own
    state, with the same layout, under another prefix. ``lateness`` (default
    SKEWLESS_EXACT_LATENESS_SECONDS) is how much raw history each entity keeps."""

    def __init__(
        self,
        redis,
        service: str | FeatureService | None = None,
        round_trip: RoundTrips | None = None,
        prefix: str = KEY_PREFIX,
        lateness: timedelta | None = None,
    ):
        self.redis = redis  # a redis-py client
        self.prefix = prefix
        self.round_trip = round_trip or (round_trips(redis) if redis is not None else None)
        self.service = service if isinstance(service, FeatureService) else _service(service)
        if lateness is None:
            lateness = timedelta(seconds=settings.get("SKEWLESS_EXACT_LATENESS_SECONDS"))
        self.lateness = lateness
        retention: dict[str, timedelta] = {}
        join_keys: dict[str, str] = {}
        groups: dict[str, list[FeatureGroup]] = defaultdict(list)
        for group in self.service.groups:
            name = group.entity.name
            retention[name] = max(retention.get(name, group.horizon), group.horizon)
            join_keys[name] = group.entity.join_key
            groups[name].append(group)
        # how far back the events that fill the tiles at a time reach (what a bootstrap loads)
        self.retention = retention
        self.join_keys = join_keys  # entity name -> join key (a column of every event)
        self.layouts = {name: Layout(of, lateness) for name, of in groups.items()}
        self.codecs = {name: Codec(layout) for name, layout in self.layouts.items()}

    def keys(self, entity: str, key: str) -> list[str]:
        """The entity's tiles, raw events and labels keys."""
        return [state_key(entity, key, self.prefix, part) for part in ("tiles", "raw", "labels")]

    # -- writing ---------------------------------------------------------------------------------
    def add_event(self, event: Mapping) -> None:
        """Adds one event (transaction_id, customer_id, merchant_id, event_timestamp, amount,
        optional is_fraud / label_timestamp) to each entity's state."""
        self.round_trip(*self.add_event_commands(event))

    def add_event_commands(self, event: Mapping, *, only_existing: bool = False) -> list[tuple]:
        """add_event() as Redis commands (one script per entity), to send along with others in one
        round trip. ``only_existing``: ``event`` carries the label of an event that arrived
        before; only the label is added."""
        has_label = event.get("is_fraud") is not None and event.get("label_timestamp") is not None
        event_us = to_micros(event["event_timestamp"])
        label_us = to_micros(event["label_timestamp"]) if has_label else 0
        times = (str(event_us), str(label_us), str(minute_of(event_us)), str(minute_of(label_us)))
        key = Codec.key(event)
        flags = ("1" if has_label else "0", "1" if only_existing else "0")
        lateness = str(_us(self.lateness))
        commands = []
        for entity, join_key in self.join_keys.items():
            layout, codec = self.layouts[entity], self.codecs[entity]
            updates = msgpack.packb(layout.event_updates(event))
            label_updates = msgpack.packb(layout.label_updates(event) if has_label else [])
            kept = has_label and codec.label_columns  # an entity without label rates keeps none
            label_frame = codec.label_frame(event) if kept else b""
            commands.append(
                (
                    *_ADD_COMMAND,
                    3,
                    *self.keys(entity, str(event[join_key])),
                    times[0],
                    codec.event_frame(event),
                    key,
                    *flags,
                    updates,
                    label_updates,
                    times[1],
                    lateness,
                    times[2],
                    times[3],
                    label_frame,
                )
            )
        return commands

    def set_label(self, event: Mapping) -> None:
        """A label became known: the event (with its ids and event time, already added) gets
        is_fraud and label_timestamp."""
        if event.get("is_fraud") is None or event.get("label_timestamp") is None:
            raise ValueError("set_label needs is_fraud and label_timestamp")
        self.round_trip(*self.add_event_commands(event, only_existing=True))

    def clear(self) -> int:
        """Deletes every entity's keys. Returns how many keys went."""
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
        label_timestamp; naive UTC times): their tiles, and the raw events and labels of the
        lateness allowance before ``as_of`` (default: the newest event or label). ``clear`` first
        deletes the current state. The replay calls this before a day."""
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
        columns = [*EVENT_KEYS, "event_timestamp", "amount"]
        records = frame[[*columns, "is_fraud", "label_timestamp"]].to_dict("records")
        for record in records:
            record["event_timestamp"] = record["event_timestamp"].to_pydatetime()
            label_time = record["label_timestamp"]
            known = not pd.isna(label_time) and not pd.isna(record["is_fraud"])
            record["label_timestamp"] = label_time.to_pydatetime() if known else None
            record["is_fraud"] = int(record["is_fraud"]) if known else None
        records.sort(key=lambda r: r["event_timestamp"])
        newest = max(
            [r["event_timestamp"] for r in records]
            + [r["label_timestamp"] for r in records if r["label_timestamp"] is not None]
        )
        as_of = as_of or newest
        loaded: dict[tuple[str, str], _Loaded] = {}
        for record in records:
            for entity, join_key in self.join_keys.items():
                key = (entity, str(record[join_key]))
                state = loaded.get(key) or loaded.setdefault(key, _Loaded())
                apply_updates(state.tiles, self.layouts[entity].event_updates(record))
                state.add(record)
        commands: list[tuple] = []
        for (entity, key), state in loaded.items():
            layout, codec = self.layouts[entity], self.codecs[entity]
            commands.extend(state.commands(self.keys(entity, key), layout, codec, as_of))
            if len(commands) >= 5000:
                self.round_trip(*commands)
                commands = []
        if commands:
            self.round_trip(*commands)
        return {"events": len(records), "keys": len(loaded), "as_of": as_of.isoformat()}

    # -- reading ---------------------------------------------------------------------------------
    def events(
        self, entity: str, key: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict]:
        """The entity's raw events (those of the lateness allowance, and of the newest minute
        before it) with since <= event_timestamp < until (either bound optional), in arrival
        order per minute: id, event and label time and the columns its tiles aggregate."""
        low = "-inf" if since is None else minute_of(to_micros(since))
        raw = state_key(entity, key, self.prefix, "raw")
        found = self.codecs[entity].events(self.redis.zrangebyscore(raw, low, "+inf"))
        return [
            e
            for e in found
            if (since is None or e["event_timestamp"] >= since)
            and (until is None or e["event_timestamp"] < until)
        ]

    def read(self, keys: Iterable[tuple[str, str]], at: datetime) -> list[EntityState]:
        """What each (entity, key) holds for a request at ``at``, in one round trip."""
        return self.read_each([(entity, key, at) for entity, key in keys])

    def read_each(self, items: Iterable[tuple[str, str, datetime]]) -> list[EntityState]:
        """What each (entity, key) holds for a request at its own time, in one round trip."""
        plans, commands = [], []
        for entity, key, at in items:
            t = to_micros(at)
            minute = minute_of(t)  # raw events and labels from t's minute on
            tiles, raw, labels = self.keys(entity, key)
            fields = self.layouts[entity].fields_at(at)
            plans.append((entity, fields))
            commands += [
                ("HMGET", tiles, _NEWEST, _PREVIOUS, *fields),
                ("ZRANGEBYSCORE", raw, minute, "+inf"),
                ("ZRANGEBYSCORE", labels, minute, "+inf"),
                ("ZREVRANGEBYSCORE", raw, f"({minute}", "-inf", "LIMIT", 0, 1),
            ]
        replies = self.round_trip(*commands) if commands else []
        out = []
        for i, (entity, fields) in enumerate(plans):
            values, head, labels, before = replies[4 * i : 4 * i + 4]
            tiles = {
                name: Tile.unpacked(msgpack.unpackb(value, raw=False, strict_map_key=False))
                for name, value in zip(fields, values[2:], strict=True)
                if value is not None
            }
            newest = tuple(None if v is None else from_micros(int(v)) for v in values[:2])
            codec = self.codecs[entity]
            out.append(
                EntityState(
                    tiles, codec.events(head), codec.labels(labels), newest, codec.events(before)
                )
            )
        return out

    def features(self, group: FeatureGroup, state: EntityState, at: datetime) -> dict:
        """The features of ``group`` at ``at`` from its entity's ``state`` (``read``)."""
        return self.layouts[group.entity.name].evaluate(
            group, at, state.tiles, state.head, state.labels, state.newest, state.before
        )


@dataclass
class _Loaded:
    """One entity's state built in memory by a bootstrap."""

    tiles: dict[str, Tile] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    newest: tuple[datetime | None, datetime | None] = (None, None)

    def add(self, record: dict) -> None:
        self.events.append(record)
        self.newest = newest_after(self.newest, record["event_timestamp"])

    def commands(self, keys: list[str], layout: Layout, codec: Codec, as_of: datetime) -> list:
        tiles, raw, labels = keys
        cutoff = layout.raw_cutoff(as_of)
        fields: list = [f for name, tile in self.tiles.items()
                        for f in (name, msgpack.packb(tile.packed()))]  # fmt: skip
        fields += [_NEWEST, str(to_micros(self.newest[0])), "w", str(to_micros(as_of))]
        if self.newest[1] is not None:
            fields += [_PREVIOUS, str(to_micros(self.newest[1]))]
        out = [("HSET", tiles, *fields)]
        timed = [(to_micros(e["event_timestamp"]), e) for e in self.events]
        # the events of the lateness, and of the newest minute before it (as the script keeps)
        older = [minute_of(at) for at, _ in timed if at < cutoff]
        keep = max(older, default=cutoff)
        recent = codec.buckets(
            (at, codec.event_frame(e)) for at, e in timed if at >= cutoff or minute_of(at) == keep
        )
        if recent:
            out.append(("ZADD", raw, *recent))
        timed = [(to_micros(e["label_timestamp"]), e)
                 for e in self.events
                 if e["label_timestamp"] is not None and codec.label_columns]  # fmt: skip
        known = codec.buckets((at, codec.label_frame(e)) for at, e in timed if at >= cutoff)
        if known:
            out.append(("ZADD", labels, *known))
        return out


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
