"""The time-based split: train | gap | test on event time, ends exclusive.

The gap is the label delay for fraud (at deployment the labels of the last days before it are not
known yet) and the 30-day horizon for churn (a row's label looks 30 days ahead, so train rows closer
than that to the test window would see into it). Defaults: test = the last 7 days with known labels,
train = everything before the gap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

from models import datasets
from skewless import settings as settings_module
from skewless.tasks import Task, get_task

TEST_DAYS = timedelta(days=7)


@dataclass(frozen=True)
class Windows:
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    gap: timedelta  # the default gap for the task (label delay / churn horizon)

    def as_dict(self) -> dict[str, str]:
        return {
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
            "gap_days": round((self.test_start - self.train_end).total_seconds() / 86400, 4),
        }


def _midnight_after(value: datetime) -> datetime:
    return datetime.combine(value.date(), datetime.min.time()) + timedelta(days=1)


def default_gap(task: Task, cfg) -> timedelta:
    """Train and test are this far apart: the label delay, or the task's label horizon."""
    return task.label_horizon or cfg.label_delay


def resolve_windows(
    task: str,
    *,
    train_start: datetime | None = None,
    train_end: datetime | None = None,
    test_start: datetime | None = None,
    test_end: datetime | None = None,
    as_of: datetime | None = None,
    cfg=None,
) -> Windows:
    """Fills the windows that are not given and validates all four (ValueError names the argument)."""
    from skewless import warehouse

    spec = get_task(task)
    cfg = cfg or settings_module.load()
    gap = default_gap(spec, cfg)
    train_start, train_end, test_start, test_end, as_of = (
        datasets.naive_utc(v) for v in (train_start, train_end, test_start, test_end, as_of)
    )
    if None in (train_start, test_start, test_end):
        known, params = datasets.as_of_predicate(spec, as_of)
        con = warehouse.connect(cfg.warehouse_path, read_only=True)
        try:
            first, last = con.execute(
                f"select min(event_timestamp), max(event_timestamp) from {spec.training_set} "
                f"where {spec.label} is not null and {known}",
                params,
            ).fetchone()
        finally:
            con.close()
        if first is None:
            when = f" known at as_of={as_of}" if as_of else ""
            raise ValueError(
                f"{spec.training_set} holds no labeled rows{when}: import data and run `skewless build`"
            )
        if test_end is None:
            test_end = _midnight_after(last)
            if spec.label_horizon is None and as_of is not None:
                # every label of the test window must be known at as_of
                test_end = min(test_end, as_of - cfg.label_delay)
        if train_start is None:
            train_start = datetime.combine(first.date(), datetime.min.time())
    if test_start is None:
        test_start = test_end - TEST_DAYS
    defaulted_train_end = train_end is None
    if train_end is None:
        train_end = test_start - gap
        if train_start >= train_end:
            raise ValueError(
                f"train_start={train_start} must be before train_end={train_end}: the data is too "
                f"short for the default split (test [{test_start}, {test_end}) after a gap of "
                f"{gap}); pass --train-end / train_end (and a shorter gap) explicitly"
            )
    for name, start, end in (
        ("train_start", train_start, train_end),
        ("test_start", test_start, test_end),
    ):
        if start >= end:
            other = name.replace("start", "end")
            raise ValueError(f"{name}={start} must be before {other}={end} (end is exclusive)")
    if train_end > test_start:
        raise ValueError(
            f"train_end={train_end} must not be after test_start={test_start}: "
            "the train window must end before the test window starts"
        )
    if as_of is not None and test_end > as_of:
        raise ValueError(f"test_end={test_end} must not be after as_of={as_of}")
    if test_start - train_end < gap and not defaulted_train_end:
        warnings.warn(
            f"the gap between train_end and test_start ({test_start - train_end}) is shorter than "
            f"the {spec.name} default ({gap}): test labels may leak into training",
            stacklevel=2,
        )
    return Windows(train_start, train_end, test_start, test_end, gap)


def check_frame(frame: datasets.TrainingFrame, which: str, start, end) -> None:
    if len(frame) == 0:
        raise ValueError(
            f"the {which} window [{start}, {end}) holds no labeled rows "
            f"({which}_start/{which}_end): pick a window inside the data"
        )
    if frame.y.nunique() < 2:
        raise ValueError(
            f"the {which} window [{start}, {end}) holds only label {int(frame.y.iloc[0])} "
            f"({len(frame)} rows; {which}_start/{which}_end): widen it so both classes occur"
        )
