"""A seeded card-fraud transaction simulator (in the raw data contract).

It follows the simulation process of "Reproducible Machine Learning for Credit Card Fraud
Detection - Practical Handbook" (Le Borgne et al., chapter 3):

- customers live at a random point of a 100 x 100 grid, with a mean amount drawn in [5, 100], a
  standard deviation of half that, and a mean number of transactions per day;
- terminals (our merchants) sit at random points; a customer uses the terminals within a radius
  of 5 of home, picked uniformly;
- each day a customer makes a Poisson number of transactions at times drawn from a normal
  distribution around midday (sd 20000 s); amounts are normal, negative draws redrawn uniformly
  in [0, 2 x mean];
- three fraud scenarios, applied in this order: (1) every amount above 220 is fraud; (2) each
  day some terminals are compromised for 28 days and all their transactions are fraud; (3) each
  day some customers are compromised for 14 days and a third of their transactions get five times
  the amount and are fraud. The handbook compromises 2 terminals of 10000 and 3 customers of 5000
  a day; the counts here scale with the population so the fraud rate stays near 1 % at any size.

On top of it: churn (some customers stop at a random day after a 2-3 week decline of their
rate), late-arriving events (arrival_timestamp after event_timestamp) and label delay
(label_timestamp: when the label became known). Everything is vectorized with NumPy; the same
arguments give the same frame.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = (
    "transaction_id",
    "event_timestamp",
    "customer_id",
    "merchant_id",
    "amount",
    "is_fraud",
    "arrival_timestamp",
    "label_timestamp",
)
SCENARIOS = ("genuine", "amount_outlier", "compromised_terminal", "compromised_card")

_DAY = 86_400  # seconds
_GRID, _RADIUS = 100.0, 5.0
_OUTLIER_AMOUNT = 220.0
_TERMINAL_DAYS, _TERMINALS_PER_DAY = 28, 2 / 10_000  # compromised per terminal, per day
_CARD_DAYS, _CARDS_PER_DAY = 14, 3 / 5_000  # compromised per customer, per day
_LATE_DELAY = (60.0, 6 * 3600.0)  # seconds, log-uniform
_CHURN_DECLINE_DAYS = (14, 21)


def generate(
    *,
    customers: int = 5000,
    days: int = 90,
    seed: int = 42,
    start: date = date(2025, 1, 1),
    tx_per_day: float = 0.5,
    terminals: int | None = None,
    churn_fraction: float = 0.1,
    late_fraction: float = 0.02,
    label_delay_days: float = 7.0,
    return_scenarios: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate `days` of transactions from `start` (UTC, naive timestamps).

    `tx_per_day` is the mean number of transactions per customer per day (each customer's rate
    is uniform in [0, 2 x tx_per_day]); `terminals` defaults to 2 x customers. Genuine labels
    become known `label_delay_days` after the event, fraud labels uniformly between 1 day (or
    the delay, if shorter) and twice the delay; label_timestamp may fall after the period.
    With `return_scenarios`, also returns the fraudulent transactions' scenario names
    (columns transaction_id, scenario).
    """
    terminals = 2 * customers if terminals is None else terminals
    _validate(
        customers,
        days,
        seed,
        start,
        tx_per_day,
        terminals,
        churn_fraction,
        late_fraction,
        label_delay_days,
    )
    rng = np.random.default_rng([seed, 0])
    # The draws below keep their order: the same seed gives the same data.
    home = rng.uniform(0, _GRID, (customers, 2))
    mean_amount = rng.uniform(5, 100, customers)
    rate = rng.uniform(0, 2 * tx_per_day, customers)
    spot = rng.uniform(0, _GRID, (terminals, 2))
    t, cust, day, term, amount = _transactions(
        rng, rate, mean_amount, home, spot, days, _churn(customers, days, seed, churn_fraction)
    )
    scenario, amount = _frauds(rng, cust, day, term, amount, customers, terminals, days)
    is_fraud = (scenario > 0).astype(np.int8)
    arrival, label = _arrivals_and_labels(rng, t, is_fraud, late_fraction, label_delay_days)

    origin = np.datetime64(date(start.year, start.month, start.day), "ns")
    transaction_id = _ids("t", np.arange(len(t)), max(len(t), 10**8))
    frame = pd.DataFrame(
        {
            "transaction_id": transaction_id,
            "event_timestamp": _at(origin, t),
            "customer_id": _ids("c", np.arange(customers), customers)[cust],
            "merchant_id": _ids("m", np.arange(terminals), terminals)[term],
            "amount": amount.astype(np.float64),
            "is_fraud": is_fraud,
            "arrival_timestamp": _at(origin, arrival),
            "label_timestamp": _at(origin, label),
        },
        columns=list(COLUMNS),
    )
    if not return_scenarios:
        return frame
    fraud = scenario > 0
    names = np.array(SCENARIOS, dtype=object)[scenario[fraud]]
    scenarios = pd.DataFrame({"transaction_id": transaction_id[fraud], "scenario": names})
    return frame, scenarios


def _transactions(rng, rate, mean_amount, home, spot, days, churn):
    """(t seconds, customer, day, terminal, amount) of every transaction, in time order: Poisson
    counts per customer and day (thinned by the churners' decline), amounts around the customer's
    mean, a terminal near the customer's home."""
    customers = len(rate)
    lam = np.repeat(rate[:, None], days, axis=1)
    churner, churn_day, decline = churn
    lam[churner] *= np.clip((churn_day[:, None] - np.arange(days)) / (decline[:, None] + 1), 0, 1)
    flat = np.repeat(np.arange(customers * days), rng.poisson(lam).ravel())
    cust, day = flat // days, flat % days
    second = _seconds_of_day(rng, len(flat))
    amount = rng.normal(mean_amount[cust], mean_amount[cust] / 2)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean_amount[cust[negative]])
    term = _pick_terminals(rng, home, spot, cust)
    keep = term >= 0  # the handbook drops transactions of customers with no terminal nearby
    t = day[keep] * _DAY + second[keep]
    order = np.argsort(t, kind="stable")
    t, cust, day, term = t[order], cust[keep][order], day[keep][order], term[keep][order]
    return t, cust, day, term, np.round(amount[keep][order], 2)


def _frauds(rng, cust, day, term, amount, customers, terminals, days):
    """(scenario per transaction, amounts): outlier amounts, compromised terminals, compromised
    cards whose stolen transactions are five times larger."""
    n = len(cust)
    scenario = np.zeros(n, np.int8)
    scenario[amount > _OUTLIER_AMOUNT] = 1
    bad_terminal = _compromised(rng, term, day, terminals, days, _TERMINALS_PER_DAY, _TERMINAL_DAYS)
    scenario[bad_terminal] = 2
    bad_card = _compromised(rng, cust, day, customers, days, _CARDS_PER_DAY, _CARD_DAYS)
    stolen = bad_card & (rng.random(n) < 1 / 3)
    amount[stolen] = np.round(amount[stolen] * 5, 2)
    scenario[stolen] = 3
    return scenario, amount


def _arrivals_and_labels(rng, t, is_fraud, late_fraction, label_delay_days):
    """(arrival, label time) in seconds: a few events arrive late; genuine labels after the delay,
    fraud labels between a day (or the delay) and twice the delay."""
    n = len(t)
    late = rng.random(n) < late_fraction
    delay = np.exp(rng.uniform(*np.log(_LATE_DELAY), n))
    arrival = t + np.where(late, np.rint(delay), 0).astype(np.int64)
    label_delay = label_delay_days * _DAY
    fraud_delay = rng.uniform(min(_DAY, label_delay), 2 * label_delay, n)
    label = t + np.rint(np.where(is_fraud == 1, fraud_delay, label_delay)).astype(np.int64)
    return arrival, label


def churned_customers(
    *,
    customers: int = 5000,
    days: int = 90,
    seed: int = 42,
    start: date = date(2025, 1, 1),
    churn_fraction: float = 0.1,
) -> pd.DataFrame:
    """The customers that `generate` with the same arguments lets churn.

    Columns customer_id and churn_date: the first midnight from which the customer makes no
    transaction; in the 14-21 days before it their rate declines linearly towards zero.
    """
    _validate(customers, days, seed, start, 1.0, 1, churn_fraction, 0.0, 0.0)
    churner, churn_day, _ = _churn(customers, days, seed, churn_fraction)
    origin = np.datetime64(date(start.year, start.month, start.day), "ns")
    frame = pd.DataFrame(
        {
            "customer_id": _ids("c", churner, customers),
            "churn_date": _at(origin, churn_day.astype(np.int64) * _DAY),
        }
    )
    return frame.sort_values("customer_id", ignore_index=True)


def write(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` as Parquet or CSV, chosen by the suffix; creates the parent folders."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"path: expected a .parquet or .csv file, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _validate(customers, days, seed, start, tx_per_day, terminals, churn, late, label_delay):
    def is_int(value):
        return isinstance(value, int | np.integer) and not isinstance(value, bool)

    def is_number(value):
        return isinstance(value, int | float | np.number) and not isinstance(value, bool)

    for name, value in (("customers", customers), ("days", days), ("terminals", terminals)):
        if not is_int(value) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(start, date):
        raise ValueError(f"start must be a datetime.date, got {start!r}")
    if not is_number(tx_per_day) or not 0 < tx_per_day < float("inf"):
        raise ValueError(f"tx_per_day must be a positive finite number, got {tx_per_day!r}")
    for name, value in (("churn_fraction", churn), ("late_fraction", late)):
        if not is_number(value) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    if not is_number(label_delay) or not 0 <= label_delay < float("inf"):
        raise ValueError(f"label_delay_days must be a non-negative number, got {label_delay!r}")


def _churn(customers: int, days: int, seed: int, fraction: float):
    """Churners, their churn day and decline length; a stream of its own, so `churned_customers`
    matches `generate` whatever the other arguments."""
    rng = np.random.default_rng([seed, 1])
    churner = np.sort(rng.choice(customers, size=round(fraction * customers), replace=False))
    churn_day = rng.integers(1, max(days, 2), size=len(churner))
    low, high = _CHURN_DECLINE_DAYS
    return churner, churn_day, rng.integers(low, high + 1, size=len(churner))


def _seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Normal around midday; draws outside the day are drawn again (the handbook drops them)."""
    seconds = rng.normal(_DAY / 2, 20_000, n)
    outside = np.flatnonzero((seconds < 0) | (seconds >= _DAY))
    while len(outside):
        seconds[outside] = rng.normal(_DAY / 2, 20_000, len(outside))
        outside = outside[(seconds[outside] < 0) | (seconds[outside] >= _DAY)]
    return seconds.astype(np.int64)


def _pick_terminals(rng, home: np.ndarray, spot: np.ndarray, cust: np.ndarray) -> np.ndarray:
    """A uniform terminal within the radius of each transaction's customer's home, -1 if none.

    Terminals are bucketed in cells of the radius' size; a candidate is drawn uniformly from
    the 3 x 3 cells around home and kept if within the radius (rejection sampling), so no
    customer x terminal table is ever built.
    """
    cells = int(_GRID // _RADIUS)
    cell_of = np.minimum((spot // _RADIUS).astype(np.int64), cells - 1)
    cell = cell_of[:, 0] * cells + cell_of[:, 1]
    by_cell = np.argsort(cell, kind="stable")
    first = np.searchsorted(cell[by_cell], np.arange(cells * cells + 1))
    home_cell = np.minimum((home // _RADIUS).astype(np.int64), cells - 1)
    starts, counts = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            cx, cy = home_cell[:, 0] + dx, home_cell[:, 1] + dy
            valid = (cx >= 0) & (cx < cells) & (cy >= 0) & (cy < cells)
            index = np.where(valid, cx * cells + cy, 0)
            starts.append(first[index])
            counts.append(np.where(valid, first[index + 1] - first[index], 0))
    starts = np.stack(starts, axis=1)
    ends = np.cumsum(np.stack(counts, axis=1), axis=1)
    total = ends[:, -1]

    picked = np.full(len(cust), -1, np.int64)
    pending = np.flatnonzero(total[cust] > 0)
    for _ in range(100):  # a customer with candidates but none in range ends up with -1
        if not len(pending):
            break
        c = cust[pending]
        u = (rng.random(len(pending)) * total[c]).astype(np.int64)
        k = (u[:, None] >= ends[c]).sum(axis=1)
        offset = u - np.where(k > 0, ends[c, np.maximum(k - 1, 0)], 0)
        candidate = by_cell[starts[c, k] + offset]
        near = ((spot[candidate] - home[c]) ** 2).sum(axis=1) <= _RADIUS**2
        picked[pending[near]] = candidate[near]
        pending = pending[~near]
    return picked


def _compromised(rng, entity, day, n_entities: int, days: int, per_day: float, duration: int):
    """Whether each transaction's entity was compromised during the `duration` days from a day
    on which it was picked. About `per_day` x `n_entities` entities are picked each day."""
    wanted = np.floor(np.arange(days + 1) * per_day * n_entities + rng.random())
    picked_day = np.repeat(np.arange(days), np.diff(wanted).astype(np.int64))
    picked = rng.integers(n_entities, size=len(picked_day))
    unique, slot_of_pick = np.unique(picked, return_inverse=True)
    change = np.zeros((len(unique), days + 1), np.int32)
    np.add.at(change, (slot_of_pick, picked_day), 1)
    np.add.at(change, (slot_of_pick, np.minimum(picked_day + duration, days)), -1)
    active = np.cumsum(change, axis=1)[:, :days] > 0
    slot = np.full(n_entities, -1, np.int64)
    slot[unique] = np.arange(len(unique))
    hit = np.zeros(len(entity), bool)
    known = slot[entity] >= 0
    hit[known] = active[slot[entity[known]], day[known]]
    return hit


def _ids(prefix: str, numbers: np.ndarray, count: int) -> np.ndarray:
    """Zero-padded ids such as c000042, as an object array of str; width fits `count`."""
    width = max(6, len(str(max(count - 1, 0))))
    if len(numbers) == 0:  # np.strings.zfill fails on empty arrays
        return np.empty(0, dtype=object)
    digits = np.strings.zfill(np.asarray(numbers).astype(f"U{width}"), width)
    return np.strings.add(prefix, digits).astype(object)


def _at(origin: np.datetime64, seconds: np.ndarray) -> np.ndarray:
    return origin + np.asarray(seconds, np.int64).astype("timedelta64[s]").astype("m8[ns]")
