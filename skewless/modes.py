"""The declared serving modes: how the sidecar gets a transaction's features at request time.

The sidecar builds one reader per mode (``serving/readers.py``), the CLI and the settings offer
them as choices, the replay and the demo prepare each as declared, and the skew report explains a
mode's mismatches by what the mode is (a stale one: staleness; otherwise: logic).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServingMode:
    name: str
    description: str
    stale: bool  # serves values computed before the request (a snapshot, a lagging stream)
    consumer: bool  # needs `skewless stream-consumer` running on the sidecar's Redis
    bootstrap: bool  # a replay first loads its state from the history before the day


# In the order the demo replays them: exact first, while the exact-mode state does not yet hold
# the day's events (every scored request enters it).
MODES: tuple[ServingMode, ...] = (
    ServingMode(
        "exact",
        "windows computed at request time from the raw events kept in Redis",
        stale=False,
        consumer=False,
        bootstrap=True,
    ),
    ServingMode(
        "streaming",
        "the rows the stream consumer pushed through Feast, read like the materialized ones",
        stale=True,
        consumer=True,
        bootstrap=True,
    ),
    ServingMode(
        "materialized",
        "the snapshot `feast materialize` loaded into Redis at the batch cutoff",
        stale=True,
        consumer=False,
        bootstrap=False,
    ),
)
NAMES: tuple[str, ...] = tuple(m.name for m in MODES)
DEFAULT = "materialized"


def mode(name: str) -> ServingMode:
    """A mode by name; ValueError naming the choices otherwise."""
    for candidate in MODES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"mode={name!r}: expected one of {list(NAMES)}")
