"""``streaming`` mode's consumer: keeps windowed features from the event stream
(``skewless/stream.py``) with a processing lag and allowed lateness, and pushes them through Feast.

The consumer (``skewless stream-consumer``, one process) reads the stream with a consumer group,
so a restart resumes where it stopped. All its clocks are in event/arrival time ("replay time"),
never the wall clock, so a replay gives the same rows whatever its speed:

- watermark W: the latest ``arrival_timestamp`` seen (an entry's arrival is W when it comes later
  than W: the consumer sees it now);
- allowed lateness: an event whose ``event_timestamp`` < W - allowed lateness is dropped (counted
  in ``dropped_late``, logged). Labels are updates of kept events, never dropped;
- processing lag: an entry read at W is due at W + lag and applied once the watermark has passed
  its due time (W > due: then every entry due at the same time has been read, so pushes do not
  depend on how reads were batched and an entity's rows get strictly increasing times);
- applying an event upserts it into the consumer's own per-entity state (``ExactState`` layout
  under ``skewless:stream:events:``); a label updates the event only where it is kept;
- pushing (serving/stream_push.py): each updated entity's features are computed by
  ``skewless.evaluate`` (the one declaration) as of just after its latest due time (due + 1 us,
  so the event itself counts) and pushed with that time through the group's push source into the
  ``<group>_stream`` view. The row then stays as it is until the entity's next update: events
  leave windows late and ``seconds_since_last`` grows stale - the usual skew of a streaming
  pipeline;
- reset (written by the replay before a day): held entries are discarded, the Feast rows of the
  stream views deleted (Feast never overwrites a newer row), the state loaded with what had
  arrived before the day (labels known by then, as exact mode's bootstrap), every entity pushed as
  of the day's start, and W set to it.

Held entries wait in a sorted set (``skewless:{stream}:held``, score = due time), the watermark and
counters in the hash ``skewless:{stream}:consumer`` (also the heartbeat the sidecar checks), so
nothing is lost across a restart; applying is an upsert, so redoing it after a crash is harmless.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from serving import stream_push
from serving.stream_push import MICROSECOND
from skewless import settings
from skewless.features import Agg
from skewless.schemas import EVENT_ID
from skewless.stream import (
    HELD_KEY,
    STATUS_KEY,
    STREAM,
    Status,
    as_text,
    decode_entry,
    event_from_text,
    iso_time,
    push_source_name,
    stream_view_name,
    streamed_groups,
)

logger = logging.getLogger(__name__)

GROUP = "skewless-stream-consumer"
CONSUMER = "consumer-1"
STATE_PREFIX = "skewless:stream:events:"


# -- consuming ------------------------------------------------------------------------------------


def _micros(value: datetime) -> int:
    from serving.state import to_micros

    return to_micros(value)


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class StreamConsumer:
    """Reads ``skewless:{stream}:events``, applies due events to its state and pushes updated
    entities' features through Feast (``store``: a ``feast.FeatureStore`` on the same Redis)."""

    def __init__(
        self,
        redis_client,
        store,
        *,
        lag: float | None = None,
        allowed_lateness: float | None = None,
        batch: int = 500,
        name: str = CONSUMER,
        cfg=None,
    ):
        from serving.state import ExactState

        if batch < 1:
            raise ValueError(f"batch={batch}: expected at least 1 entry per read")
        section = settings.section(  # the table's defaults and checks (SKEWLESS_STREAM_*)
            "stream",
            overrides={
                k: v
                for k, v in (
                    ("STREAM_LAG_SECONDS", lag),
                    ("STREAM_ALLOWED_LATENESS_SECONDS", allowed_lateness),
                )
                if v is not None
            },
        )
        lag, allowed_lateness = (
            section["STREAM_LAG_SECONDS"],
            section["STREAM_ALLOWED_LATENESS_SECONDS"],
        )
        self.redis = redis_client
        self.store = store
        self.lag = timedelta(seconds=lag)
        self.allowed_lateness = timedelta(seconds=allowed_lateness)
        self.batch = batch
        self.name = name
        self.cfg = cfg  # settings: the reset loads history from the warehouse (read-only)
        self.groups = streamed_groups()
        self.state = ExactState(redis_client, prefix=STATE_PREFIX)
        self.label_groups = [
            g for g in self.groups if any(a.agg is Agg.LABELED_RATE for a in g.aggregates)
        ]
        self.status = Status()

    # -- setup ------------------------------------------------------------------------------------
    def check_store(self, attempts: int = 1, delay: float = 0.0) -> None:
        """Every push source is in the Feast registry, else a clear error. A registry being
        rewritten (`feast materialize`, `feast apply`) can read empty for a moment: up to
        ``attempts`` reads, ``delay`` seconds apart, the registry refreshed before each retry."""
        for attempt in range(1, attempts + 1):
            missing = self._missing_push_source()
            if missing is None:
                return
            if attempt < attempts:
                logger.warning("%s; retrying (%d/%d)", missing, attempt, attempts)
                time.sleep(delay)
                self.store.refresh_registry()
        raise RuntimeError(f"{missing}: run `skewless build` (feast apply)")

    def _missing_push_source(self) -> str | None:
        for group in self.groups:
            name = push_source_name(group.name)
            try:
                self.store.get_data_source(name)
            except Exception as exc:
                return f"push source {name!r} is not in the Feast registry ({type(exc).__name__})"
        return None

    def start(self, *, fresh: bool = False) -> None:
        """Creates the consumer group (reading from the stream's start) and loads the status, or
        with ``fresh`` writes a new one over it (every field, in one write)."""
        import redis

        try:
            self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.status = Status() if fresh else Status.load(self.redis.hgetall(STATUS_KEY))
        self.heartbeat()

    def heartbeat(self) -> None:
        self.redis.hset(
            STATUS_KEY,
            mapping={
                **self.status.fields(),
                "heartbeat": datetime.now(UTC).replace(tzinfo=None).isoformat(),
                "held": str(self.redis.zcard(HELD_KEY)),
                "lag_seconds": repr(self.lag.total_seconds()),
                "allowed_lateness_seconds": repr(self.allowed_lateness.total_seconds()),
                "consumer": self.name,
            },
        )

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, stop: Callable[[], bool] = lambda: False, block_ms: int = 500) -> None:
        self.start()
        self.poll(pending=True)  # entries delivered before a restart, never acknowledged
        while not stop():
            if not self.poll(block_ms=block_ms):
                self.heartbeat()

    def poll(self, *, pending: bool = False, block_ms: int | None = None) -> int:
        """Reads and processes entries: new ones (``>``), or all of this consumer's pending ones.
        Returns how many were read."""
        import redis

        total = 0
        cursor = "0"
        while True:
            try:
                replies = self.redis.xreadgroup(
                    GROUP,
                    self.name,
                    {STREAM: cursor if pending else ">"},
                    count=self.batch,
                    block=None if pending else block_ms,
                )
            except redis.ResponseError as exc:
                # NOGROUP, or UNBLOCKED when Redis 7 deletes the stream under a blocked read
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                # the stream and its group are gone (deleted, or Redis was flushed): a new group
                # on a new stream, read from its start, and a new status (counters, watermark)
                logger.warning("%s: starting over on a new stream", exc)
                self.start(fresh=True)
                return total
            entries = replies[0][1] if replies else []
            entries = [(as_text(i), f) for i, f in entries if f]  # a trimmed entry has no fields
            if entries:
                self.process(entries)
                total += len(entries)
                cursor = entries[-1][0]
            if not pending or not entries:
                return total

    def process(self, entries: list[tuple[str, Mapping]]) -> None:
        """Handles a batch of (entry id, fields) in stream order, then applies what is due."""
        segment: list[tuple[str, dict]] = []
        for entry_id, fields in entries:
            try:
                entry = decode_entry(fields)
            except (KeyError, ValueError) as exc:
                logger.error("stream entry %s skipped: %s", entry_id, exc)
                self.redis.xack(STREAM, GROUP, entry_id)
                continue
            if entry["kind"] == "reset":
                self._hold(segment)
                segment = []
                self.reset(entry_id, entry["as_of"])
            else:
                segment.append((entry_id, entry))
        self._hold(segment)
        self.apply_due()

    def _hold(self, segment: list[tuple[str, dict]]) -> None:
        """Advances the watermark, drops events beyond the allowed lateness and holds the rest
        until they are due; then one round trip: held set, status, acknowledgements."""
        if not segment:
            return
        held: dict[str, int] = {}
        for entry_id, entry in segment:
            arrival = entry["arrival"]
            mark = self.status.watermark
            self.status.watermark = arrival if mark is None or arrival > mark else mark
            event = entry["event"]
            if entry["kind"] == "event":
                limit = self.status.watermark - self.allowed_lateness
                if event["event_timestamp"] < limit:
                    self.status.dropped_late += 1
                    logger.info(
                        "dropped late event %s: event time %s < watermark %s - allowed lateness",
                        event[EVENT_ID],
                        event["event_timestamp"].isoformat(),
                        self.status.watermark.isoformat(),
                    )
                    continue
            member = json.dumps(
                {"id": entry_id, "kind": entry["kind"], **_plain(event)}, separators=(",", ":")
            )
            held[member] = _micros(self.status.watermark + self.lag)
        self.status.read += len(segment)
        pipe = self.redis.pipeline(transaction=True)
        if held:
            pipe.zadd(HELD_KEY, held)
        pipe.hset(STATUS_KEY, mapping=self.status.fields())
        pipe.xack(STREAM, GROUP, *[entry_id for entry_id, _ in segment])
        pipe.execute()

    def apply_due(self) -> int:
        """Applies the held entries due before the watermark, then pushes the entities they
        changed. Returns how many entries were applied."""
        from serving.state import from_micros

        mark = self.status.watermark
        if mark is None:
            return 0
        due = self.redis.zrangebyscore(HELD_KEY, "-inf", f"({_micros(mark)}", withscores=True)
        if not due:
            return 0
        items = []
        for member, score in due:
            item = json.loads(member)
            items.append((int(score), _entry_order(item["id"]), member, item))
        items.sort(key=lambda x: x[:2])
        commands = []
        touched: dict[tuple[str, str], datetime] = {}  # (group, key) -> latest due time
        for score, _, _, item in items:
            event = _from_plain(item)
            label = item["kind"] == "label"
            commands.extend(self.state.add_event_commands(event, only_existing=label))
            at = from_micros(score)
            for group in self.label_groups if label else self.groups:
                touched[(group.name, str(event[group.entity.join_key]))] = at
        for start in range(0, len(commands), 1000):
            self.state.round_trip(*commands[start : start + 1000])
        pushed = self.push(
            {key: at + MICROSECOND for key, at in touched.items()},
        )
        self.status.applied += len(items)
        self.status.pushed_rows += pushed
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(HELD_KEY, *[member for _, _, member, _ in items])
        pipe.hset(STATUS_KEY, mapping=self.status.fields())
        pipe.execute()
        return len(items)

    # -- computing and pushing --------------------------------------------------------------------
    def push(self, as_of: dict[tuple[str, str], datetime]) -> int:
        """Computes the features of each (group, entity key) as of its time from the state and
        pushes them, one push per group. Returns the number of rows pushed."""
        return stream_push.push(self.store, self.state, self.groups, as_of)

    # -- reset ------------------------------------------------------------------------------------
    def reset(self, entry_id: str, as_of: datetime) -> None:
        """Restarts the pipeline as of ``as_of``: see the module docstring."""
        from feast.infra.online_stores.redis import RedisOnlineStore

        started = time.perf_counter()
        self.redis.delete(HELD_KEY)
        self.state.clear()
        online = RedisOnlineStore()
        for group in self.groups:
            view = self.store.get_feature_view(stream_view_name(group.name))
            online.delete_table(self.store.config, view)
        pushed = 0
        if self.cfg is not None:
            pushed = self._bootstrap(as_of)
        else:
            logger.warning("reset as of %s without settings: starting from no history", as_of)
        self.status.watermark = as_of
        self.status.resets += 1
        self.status.reset_id = entry_id
        self.status.pushed_rows += pushed
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(STATUS_KEY, mapping=self.status.fields())
        pipe.xack(STREAM, GROUP, entry_id)
        pipe.execute()
        logger.info(
            "reset as of %s: %d rows pushed in %.1fs", as_of, pushed, time.perf_counter() - started
        )

    def _bootstrap(self, as_of: datetime) -> int:
        """Loads what had arrived before ``as_of`` and pushes every entity's row as of then."""
        from serving.state import known_history

        try:
            _, loaded = known_history(self.cfg, as_of)
        except Exception as exc:  # a missing or locked warehouse: stream from no history
            logger.error("reset as of %s: no history loaded (%s)", as_of, exc)
            return 0
        self.state.bootstrap(loaded, as_of=as_of, clear=False)
        rows = {
            (group.name, str(key)): as_of
            for group in self.groups
            for key in loaded[group.entity.join_key].dropna().unique()
        }
        return stream_push.push(self.store, self.state, self.groups, rows)


def _plain(event: Mapping) -> dict:
    return {k: (iso_time(v) if isinstance(v, datetime) else v) for k, v in event.items()}


def _from_plain(item: Mapping) -> dict:
    return event_from_text(item, labeled=bool(item.get("label_timestamp")))


def main(
    *,
    lag: float | None = None,
    allowed_lateness: float | None = None,
    batch: int = 500,
    name: str = CONSUMER,
    redis_url: str | None = None,
) -> int:
    """``skewless stream-consumer``: runs until SIGTERM or SIGINT."""
    import signal

    from skewless import dependencies, pipeline, redis_server
    from skewless.redis_server import serving_url

    cfg = settings.load()
    url = serving_url(cfg, redis_url)
    dependencies.wait_for_redis(url)  # bounded and logged: a dead Redis is an exit, not a hang
    client = redis_server.connect(url, cluster=cfg.redis_cluster)
    store = pipeline.feature_store(cfg, url)
    consumer = StreamConsumer(
        client, store, lag=lag, allowed_lateness=allowed_lateness, batch=batch, name=name, cfg=cfg
    )
    consumer.check_store(cfg.dependency_attempts, cfg.dependency_delay)
    stopping = []

    def _stop(signum, _frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info(
        "stream consumer %s on %s (stream %s): lag %ss, allowed lateness %ss",
        name,
        url,
        STREAM,
        consumer.lag.total_seconds(),
        consumer.allowed_lateness.total_seconds(),
    )
    try:
        consumer.run(stop=lambda: bool(stopping))
    finally:
        client.close()
    logger.info("stream consumer stopped: %s", consumer.status.fields())
    return 0
