"""Window state as tiles: what exact mode keeps per entity instead of every raw event.

A window w with hop h covers [floor(t - w, h), t) (``skewless.vocabulary``): its tail is a tile
boundary. So an entity keeps, per tile length (a ladder of nested lengths: a day, an hour, 5
minutes, a minute, and the declared hops), a ring of pre-aggregated tiles: event count, sums and
non-null counts of the summed columns, how often each value of the counted columns occurs, the
newest event time, and the labels of the tile's events; windows over label time keep a second ring
keyed by label time. Beside them, the raw events and labels of the last ``lateness``.

A window ending at t reads the fewest whole tiles from its tail to the tile holding t's minute,
then that tile less the raw events from t on (every event after t is raw: t is within the
lateness of the newest event); a window ending before t (an offset) reads whole tiles only. The
work of a request is a fixed number of tiles whatever the entity's traffic, and the value is exact
at any t no earlier than ``lateness`` before the entity's newest event or label: tiles hold every
event and label that arrived, and what does not count at t (events from t on, labels known after
t) is taken back out with the raw ones. A label is final: a second label for the same event is
ignored while its first is among the raw ones.

``Layout`` is the layout of one entity of a feature service: which tiles a write touches
(``event_updates``, ``label_updates``), which ones a read needs (``fields_at``), and the features
at t from them (``evaluate``), which a property test holds equal to ``skewless.evaluate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from skewless.vocabulary import Agg, FeatureGroup, window_hop, window_length

MINUTE = timedelta(minutes=1)
# Tile lengths always kept besides the declared hops, so that climbing from a window's tail to
# t's minute takes few tiles (at most 23 hours, 11 five-minute and 4 one-minute ones).
LADDER = (timedelta(days=1), timedelta(hours=1), timedelta(minutes=5), MINUTE)
_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000  # every tile length divides a day (``check_hops``, LADDER)
_FIELDS = ""  # a plan's entry listing every field it reads (no window has an empty name)


@dataclass(frozen=True)
class _Cover:
    """The tiles a window reads: (field, index, sign) each, sign -1 for a tile taken out; ``end``:
    when its last tile runs past t's minute, where that tile ends (what it holds from t to there
    is taken back out)."""

    entries: list
    end: int | None
    label_time: bool = False


def micros(value: datetime) -> int:
    """Naive UTC datetime -> integer microseconds since the epoch (exact)."""
    return (value - _EPOCH) // _US


def newest_after(newest: tuple, at):
    """An entity's (newest, the newest before it) event times once an event at ``at`` arrived
    (the state's script keeps them the same way)."""
    last, previous = newest
    if last is None or at > last:
        return at, last
    if at < last and (previous is None or at > previous):
        return last, at
    return newest


def apply_updates(tiles: dict, updates: Iterable[tuple]) -> None:
    """Applies updates (``event_updates``, ``label_updates``) to ``tiles`` (field -> Tile) the way
    the state's script does in Redis: a slot holding an older tile starts over, an update for an
    older tile than its slot holds is dropped (it left every window)."""
    for name, index, adds, distinct, newest in updates:
        tile = tiles.get(name)
        if tile is None or tile.index < index:
            tile = tiles[name] = Tile(index)
        elif tile.index > index:
            continue
        for key, value in adds.items():
            tile.values[key] = tile.values.get(key, 0) + value
        for key, value in distinct.items():
            counts = tile.values.setdefault(key, {})
            counts[value] = counts.get(value, 0) + 1
        if newest is not None:
            tile.values["m"] = max(tile.values.get("m", newest), newest)


def _us(delta: timedelta) -> int:
    return delta // _US


MINUTE_US = _us(MINUTE)


def minute_of(at_us: int) -> int:
    """The start of the minute holding ``at_us`` (us since the epoch)."""
    return at_us - at_us % MINUTE_US


@dataclass(frozen=True)
class _Window:
    group: str
    name: str
    agg: Agg
    column: str | None
    length: int  # microseconds
    hop: int
    shift: int
    label_time: bool
    within: int  # over label time: how long after its event a label may come and count

    @property
    def label_key(self) -> str:
        return f"{self.column}:{self.within // 1_000_000}"


@dataclass
class Tile:
    """One tile: its index (start // length) and its sums."""

    index: int
    values: dict = field(default_factory=dict)

    def packed(self) -> dict:
        """As the state stores it (a msgpack map): the index under ``i``."""
        return {"i": self.index, **self.values}

    @classmethod
    def unpacked(cls, data: dict) -> Tile:
        """From ``packed()``'s map (taken over, not copied)."""
        return cls(data.pop("i"), data)


def _ratio(n, y) -> float | None:
    return y / n if n else None


def _take_out(total: dict, after: list[dict], sum_columns, distinct_columns, label_columns) -> None:
    """Takes the raw events ``after`` (from t to the end of a window's last tile) and their
    labels out of ``total``."""
    for event in after:
        total["n"] = total.get("n", 0) - 1
        for column in distinct_columns:
            if event.get(column) is not None:
                counts = total.setdefault(f"d:{column}", {})
                counts[str(event[column])] = counts.get(str(event[column]), 0) - 1
        for column in sum_columns:
            if event.get(column) is not None:
                total[f"s:{column}"] = total.get(f"s:{column}", 0.0) - float(event[column])
                total[f"c:{column}"] = total.get(f"c:{column}", 0) - 1
        if event.get("label_timestamp") is not None:
            for column in label_columns:
                if event.get(column) is not None:
                    total[f"ln:{column}"] = total.get(f"ln:{column}", 0) - 1
                    total[f"ly:{column}"] = total.get(f"ly:{column}", 0.0) - float(event[column])


def _take_out_labels(total: dict, labels: list[dict], t: int, end: int, keys: dict) -> None:
    """Takes out of ``total`` (tiles over label time, the last one running past t to ``end``)
    the raw labels it holds that do not count at t: known after t, or of an event not before t."""
    for label in labels:
        known, happened = micros(label["label_timestamp"]), micros(label["event_timestamp"])
        if known >= end or (known <= t and happened < t):
            continue  # not in that tile, or it counts
        for (column, within), key in keys.items():
            if label.get(column) is not None and known - happened <= within:
                total[f"n:{key}"] = total.get(f"n:{key}", 0) - 1
                total[f"y:{key}"] = total.get(f"y:{key}", 0.0) - float(label[column])


def _sum(entries: list[tuple[str, int, int]], tiles: Mapping[str, Tile | None]) -> dict:
    """The tiles of ``entries`` (field, index, sign) that ``tiles`` holds at that index, added
    up (or taken out, sign -1): sums and counts, the counts of each distinct value too."""
    total: dict = {}
    get, tile_of = total.get, tiles.get  # bound once: this loop is exact mode's hot path
    for name, index, sign in entries:
        tile = tile_of(name)
        if tile is None or tile.index != index:
            continue  # never written, or its slot holds another tile now
        for key, value in tile.values.items():
            if key[0] == "d":
                counts = total.setdefault(key, {})
                for item, count in value.items():
                    counts[item] = counts.get(item, 0) + sign * count
            elif key != "m":
                total[key] = get(key, 0) + sign * value
    return total


class Layout:
    """The tiles of one entity's groups (of one feature service) with ``lateness`` of raw history."""

    def __init__(self, groups: Sequence[FeatureGroup], lateness: timedelta):
        self.groups = tuple(groups)
        self.lateness = _us(lateness)
        self.windows: list[_Window] = []
        for group in self.groups:
            for aggregate, window, name in group.window_features():
                if window is None:
                    continue
                self.windows.append(
                    _Window(
                        group.name,
                        name,
                        aggregate.agg,
                        aggregate.column,
                        _us(window_length(window)),
                        _us(window_hop(window)),
                        _us(aggregate.shift),
                        aggregate.label_time,
                        _us(aggregate.label_within) if aggregate.label_time else 0,
                    )
                )
        minute = MINUTE_US
        odd = [w.name for w in self.windows if (w.length % minute or w.hop % minute
                                                or w.shift % minute or w.within % minute)]  # fmt: skip
        if odd:
            raise ValueError(f"windows of whole minutes only (lengths, hops, offsets): {odd}")
        self._plans: dict[int, dict] = {}
        self._shapes: dict[tuple, list] = {}  # _signed's tiles, relative to the start's day
        # covers by (over label time, start, end, top level): the same for every minute of t's
        # tile at that level (a window ending at t is topped by the tile holding t's minute)
        self._covers: dict[tuple, _Cover] = {}
        self._by_group: dict[str, list[_Window]] = {}  # each group's windows, in order
        self._since_names: dict[str, list[str]] = {}  # each group's seconds-since features
        hops = {w.hop for w in self.windows}
        top = max(hops, default=MINUTE_US)
        ladder = {_us(length) for length in LADDER if _us(length) <= top}
        self.levels = tuple(sorted(hops | ladder, reverse=True))  # longest first
        self.label_levels = self.levels if any(w.label_time for w in self.windows) else ()
        self.sum_columns = sorted({w.column for w in self.windows if w.agg in (Agg.SUM, Agg.AVG)})
        self.distinct_columns = sorted(
            {w.column for w in self.windows if w.agg is Agg.COUNT_DISTINCT}
        )
        self.label_columns = sorted(
            {w.column for w in self.windows if w.agg is Agg.LABELED_RATE and not w.label_time}
        )
        self.label_time_keys = {  # over label time: (column, within) -> counter name
            (w.column, w.within): w.label_key for w in self.windows if w.label_time
        }
        self.slots = {
            level: self._retention(level, [w for w in self.windows if not w.label_time]) // level
            + 2
            for level in self.levels
        }
        self.label_slots = {
            level: self._retention(level, [w for w in self.windows if w.label_time]) // level + 2
            for level in self.label_levels
        }
        # the field of each slot: {over label time: {level: [name per slot]}}
        self._names = {
            over_label_time: {
                level: [
                    f"{'l' if over_label_time else 'e'}{level // 1_000_000}:{slot}"
                    for slot in range(count)
                ]  # fmt: skip
                for level, count in slots.items()
            }
            for over_label_time, slots in ((False, self.slots), (True, self.label_slots))
        }

    def _retention(self, level: int, windows: list[_Window]) -> int:
        """How far back from the newest time tiles of ``level`` may be read: the windows whose
        tails are aligned to it or a shorter hop reach back their whole extent; otherwise a tile
        is read only on the way down to t's minute, within the next longer tile."""
        longer = [length for length in self.levels if length > level]
        top = self.levels[0]  # a window may read from its tail's longest tile on (``_cover``)
        reach = [w.shift + w.length + w.hop + top for w in windows if w.hop <= level]
        return self.lateness + max([*reach, min(longer, default=level)])

    # -- writing ---------------------------------------------------------------------------------
    def event_updates(self, event: Mapping) -> list[tuple]:
        """(field, index, adds, distinct, newest) per tile an arriving event goes into: ``adds``
        are sums to add, ``distinct`` values to add to sets, ``newest`` the event time (us)."""
        at = micros(event["event_timestamp"])
        adds: dict[str, float] = {"n": 1}
        for column in self.sum_columns:
            value = event.get(column)
            if value is not None:
                adds[f"s:{column}"] = float(value)
                adds[f"c:{column}"] = 1
        distinct = {
            f"d:{column}": str(event[column])
            for column in self.distinct_columns
            if event.get(column) is not None
        }
        labelled = event.get("label_timestamp") is not None
        if labelled:
            adds.update(self._label_adds(event))
        out = [
            (self.event_field(level, at // level), at // level, adds, distinct, at)
            for level in self.levels
        ]
        return out + (self._label_time_updates(event) if labelled else [])

    def _label_adds(self, event: Mapping) -> dict[str, float]:
        adds: dict[str, float] = {}
        for column in self.label_columns:
            value = event.get(column)
            if value is not None:
                adds[f"ln:{column}"] = 1
                adds[f"ly:{column}"] = float(value)
        return adds

    def label_updates(self, event: Mapping) -> list[tuple]:
        """The tiles a label (``event`` with its label and label_timestamp) goes into: the labels
        of its event's tiles, and the tiles over label time."""
        at = micros(event["event_timestamp"])
        adds = self._label_adds(event)
        out = []
        if adds:
            out += [(self.event_field(level, at // level), at // level, adds, {}, None)
                    for level in self.levels]  # fmt: skip
        return out + self._label_time_updates(event)

    def _label_time_updates(self, event: Mapping) -> list[tuple]:
        at = micros(event["event_timestamp"])
        known = micros(event["label_timestamp"])
        out = []
        by_label: dict[str, float] = {}
        for (column, within), key in self.label_time_keys.items():
            if event.get(column) is not None and known - at <= within:
                by_label[f"n:{key}"] = 1
                by_label[f"y:{key}"] = float(event[column])
        if by_label:
            out += [
                (self.label_field(level, known // level), known // level, by_label, {}, None)
                for level in self.label_levels
            ]
        return out

    def event_field(self, level: int, index: int) -> str:
        names = self._names[False][level]
        return names[index % len(names)]

    def label_field(self, level: int, index: int) -> str:
        names = self._names[True][level]
        return names[index % len(names)]

    def raw_cutoff(self, newest: datetime) -> int:
        """Raw events and labels older than this (us) may go: ``lateness`` before the newest
        time, rounded down to the minute."""
        return minute_of(micros(newest) - self.lateness)

    # -- reading ---------------------------------------------------------------------------------
    def _signed(self, start: int, end: int, levels: Sequence[int], past_end: bool):
        """``_tiles_between`` of [start, end), computed once per shape: tile lengths divide a day,
        so moving a range by whole days moves its tiles' indices and nothing else (requests a
        minute apart, as a replayed day sends them, share the few shapes of a day's windows)."""
        day = start - start % _DAY_US
        key = (start - day, end - start, levels, past_end)
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= 4096:
                self._shapes.clear()
            tiles = self._tiles_between(start - day, end - day, levels, past_end)
            shape = self._shapes[key] = tiles
        return [(level, index + day // level, sign) for level, index, sign in shape]

    def _tiles_between(self, start: int, end: int, levels: Sequence[int], past_end: bool):
        """(level, index, sign) of the fewest tiles adding up to [start, end): the whole tiles
        between, or the longest tiles around an end less the short ones beyond it, whichever
        are fewer (beyond ``end`` only when ``past_end``: those tiles lie before t's minute)."""
        top = levels[0]
        low = start - start % top
        high = end if not past_end or end % top == 0 else end - end % top + top
        best = None
        for lo in {start, low}:
            for hi in {end, high}:
                if lo >= hi:
                    continue
                plus = self._cover(lo, hi, levels)
                minus = self._cover(lo, start, levels) + self._cover(end, hi, levels)
                if best is None or len(plus) + len(minus) < len(best):
                    best = [(lv, i, 1) for lv, i in plus] + [(lv, i, -1) for lv, i in minus]
        return best or []

    def _cover(self, start: int, end: int, levels: Sequence[int]) -> list[tuple[int, int]]:
        """(level, index) of the fewest whole tiles covering [start, end), longest first."""
        out, pos = [], start
        while pos < end:
            for level in levels:
                if pos % level == 0 and pos + level <= end:
                    out.append((level, pos // level))
                    pos += level
                    break
            else:  # pragma: no cover - start and end are minutes, and a minute is a level
                raise ValueError(f"[{start}, {end}) is not made of whole tiles")
        return out

    def _ranges(self, window: _Window, at: int) -> tuple[int, int]:
        """(start, end) of the tiles of a window at ``at`` (us): its end, or for a window ending
        at t, t's minute (the tile holding it is read too, less what it holds from t on)."""
        minute = minute_of(at)
        base = at - window.shift - window.length
        start = base - base % window.hop
        if window.shift:
            end = (at - window.shift) - (at - window.shift) % window.hop
            return start, min(end, minute)
        return start, max(start, minute)

    def plan(self, at: datetime) -> dict[str, _Cover]:
        """The tiles each window reads at ``at``: {window name: its cover}. The same for every t
        of one minute (windows, offsets and hops are whole minutes): computed once per minute."""
        t = micros(at)
        minute = minute_of(t)
        plan = self._plans.get(minute)
        if plan is None:
            if len(self._plans) >= 16:
                self._plans.clear()
            plan = self._plans[minute] = self._plan(minute)
        return plan

    def _plan(self, t: int) -> dict[str, _Cover]:
        """Windows over the same tiles share one list of them (``evaluate`` sums it once).

        A window ending at t (counts, sums, means, label rates) reads, instead of the many short
        tiles from the last long boundary to t, the one tile holding t's minute, less the raw
        events after t (every event after t is raw: t is within the lateness of the newest one).
        Windows ending before t read the tiles up to the end of the window."""
        out, covers = {}, self._covers
        for window in self.windows:
            start, tiles_end = self._ranges(window, t)
            levels = self.label_levels if window.label_time else self.levels
            if window.shift:
                key = (window.label_time, start, tiles_end, None)
            else:  # the longest tile holding t's minute that starts within the window
                level = next(lv for lv in levels if tiles_end - tiles_end % lv >= start)
                key = (window.label_time, start, tiles_end - tiles_end % level, level)
            cover = covers.get(key)
            if cover is None:
                if len(covers) >= 1024:
                    covers.clear()
                cover = covers[key] = self._make_cover(*key, levels)
            out[window.name] = cover
        # built before the plan is shared: threads of a worker read it while others evaluate
        out[_FIELDS] = sorted({name for c in out.values() for name, _, _ in c.entries})
        return out

    def _make_cover(self, label_time: bool, start: int, end: int, level: int | None, levels):
        """The tiles of [start, end) (with ``level``: and the tile of that level starting at end,
        topped off at t by ``evaluate``), as the fields that hold them."""
        names = self._names[label_time]
        if level is not None:
            tiles = [*self._signed(start, end, levels, False), (level, end // level, 1)]
            top_end = end + level
        else:
            tiles, top_end = self._signed(start, end, levels, True), None
        entries = [(names[lv][i % len(names[lv])], i, sign) for lv, i, sign in tiles]
        return _Cover(entries, top_end, label_time)

    def fields_at(self, at: datetime) -> list[str]:
        """Every tile field a request at ``at`` reads, each once."""
        return self.plan(at)[_FIELDS]

    def evaluate(
        self,
        group: FeatureGroup,
        at: datetime,
        tiles: Mapping[str, Tile | None],
        head: Iterable[Mapping],
        labels: Iterable[Mapping],
        newest: tuple[datetime | None, datetime | None] = (None, None),
        before: Iterable[Mapping] = (),
    ) -> dict:
        """The features of ``group`` at ``at`` from ``tiles`` (field -> Tile, as read), the raw
        events ``head`` from t's minute on, the raw ``labels`` known from t's minute on (events
        with their label), ``newest``: the entity's newest event time and the newest one
        before it, and ``before``: the raw events of the latest minute before t's minute that
        holds any (raw events are kept for the lateness, plus the newest older minute: the time
        of the last event before t, for a request after the two newest)."""
        t = micros(at)
        raw = [(micros(e["event_timestamp"]), e) for e in head]
        head = [e for at_us, e in raw if at_us < t]  # t's minute, before t
        labels = list(labels)
        plan = self.plan(at)
        values: dict = {}
        totals: dict[int, dict] = {}  # one sum per list of tiles, shared by its windows
        for window in self._windows_of(group.name):
            cover = plan[window.name]
            total = totals.get(id(cover))
            if total is None:
                total = totals[id(cover)] = _sum(cover.entries, tiles)
                if cover.end is not None:  # less what the last tile holds from t on
                    if cover.label_time:
                        _take_out_labels(total, labels, t, cover.end, self.label_time_keys)
                    else:
                        after = [e for at_us, e in raw if t <= at_us < cover.end]
                        columns = (self.sum_columns, self.distinct_columns, self.label_columns)
                        _take_out(total, after, *columns)
            values[window.name] = self._value(window, t, total, labels)
        for name in self._since_last_of(group):  # seconds since the last event
            values[name] = self._since_last(t, plan, tiles, head, newest, before)
        for ratio in group.ratios:
            numerator, denominator = values[ratio.numerator], values[ratio.denominator]
            values[ratio.name] = (
                None
                if numerator is None or not denominator
                else numerator / denominator * ratio.scale
            )
        return {name: values[name] for name in group.feature_names}

    def _windows_of(self, group_name: str) -> list[_Window]:
        windows = self._by_group.get(group_name)
        if windows is None:
            windows = self._by_group[group_name] = [
                w for w in self.windows if w.group == group_name
            ]
        return windows

    def _since_last_of(self, group: FeatureGroup) -> list[str]:
        names = self._since_names.get(group.name)
        if names is None:
            names = [n for _, w, n in group.window_features() if w is None]
            names = self._since_names[group.name] = names
        return names

    def _value(self, window: _Window, t: int, total: dict, labels):
        """A window's value from its tiles' ``total`` (whatever did not count at t taken out:
        only offset windows, label rates, end before t's minute)."""
        col = window.column
        if window.agg is Agg.COUNT:
            return int(total.get("n", 0))
        if window.agg is Agg.SUM:  # exactly 0 when empty: tiles added and taken out leave
            # rounding residue ((0.1 + 0.2) - 0.1 - 0.2 is not 0)
            return float(total.get(f"s:{col}", 0.0)) if total.get(f"c:{col}", 0) else 0.0
        if window.agg is Agg.AVG:
            return _ratio(total.get(f"c:{col}", 0), float(total.get(f"s:{col}", 0.0)))
        if window.agg is Agg.COUNT_DISTINCT:
            return sum(1 for count in total.get(f"d:{col}", {}).values() if count > 0)
        return self._rate(window, t, total, labels)

    def _rate(self, window: _Window, t: int, total: dict, labels):
        col = window.column
        if window.label_time:  # labels known in [start, t], of events before t, within W
            # (a window ending at t: its last tile holds them, those that do not count are out)
            key = window.label_key
            return _ratio(total.get(f"n:{key}", 0), total.get(f"y:{key}", 0.0))
        start, tiles_end = self._ranges(window, t)
        n = total.get(f"ln:{col}", 0)
        y = total.get(f"ly:{col}", 0.0)
        upto = t if not window.shift else tiles_end  # the events the tiles hold (before t)
        for label in labels:  # labels in the tiles that were not known yet at t
            happened = micros(label["event_timestamp"])
            if micros(label["label_timestamp"]) > t and start <= happened < upto:
                n, y = n - 1, y - float(label[col])
        return _ratio(n, y)

    def _since_last(self, t: int, plan, tiles, head, newest, before) -> float | None:
        last, previous = (None if n is None else micros(n) for n in newest)
        if last is not None and last < t:
            latest = last
        elif previous is not None and previous < t:  # no event between previous and last
            latest = previous
        elif head:
            latest = max(micros(e["event_timestamp"]) for e in head)
        elif before:  # the latest minute before t's that holds events, kept raw
            latest = max(micros(e["event_timestamp"]) for e in before)
        else:  # older than every event kept raw: the newest one before t's minute, from the tiles
            minute = minute_of(t)
            wanted = {
                name: index
                for key, cover in plan.items()
                if key != _FIELDS
                for name, index, _ in cover.entries
            }
            read = [
                tile.values
                for name, tile in tiles.items()
                if tile is not None and wanted.get(name) == tile.index
            ]
            times = [values["m"] for values in read if values.get("m", minute) < minute]
            if not times:
                return None
            latest = max(times)
        return (t - latest) / 1_000_000
