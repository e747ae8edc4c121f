"""Hypothesis profiles: what `make test` runs cannot fail by chance; `make fuzz` searches widely.

- ``ci`` (the default): derandomized, so every run tries the same examples for the same code; no
  example database, no deadline and no timing health check (a slow, noisy machine fails neither).
  Falsifying inputs found by fuzzing are pinned in the tests with ``@example``.
- ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, what ``make fuzz`` sets): random generation from the seed
  ``make fuzz`` prints (``--hypothesis-seed``), ``SKEWLESS_FUZZ_SCALE`` times each test's examples
  (default 10), failures saved under var/hypothesis and replayed first.

Tests size their search with ``examples(n)``: n under ``ci``, n x the scale under ``fuzz``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

BASE_EXAMPLES = 100  # hypothesis's own default: the unit of examples()

settings.register_profile(
    "ci",
    max_examples=BASE_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=BASE_EXAMPLES * int(os.environ.get("SKEWLESS_FUZZ_SCALE", "10")),
    derandomize=False,
    database=DirectoryBasedExampleDatabase(Path(__file__).parents[1] / "var" / "hypothesis"),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(n: int) -> int:
    """n examples under the ``ci`` profile, proportionally more under the loaded profile."""
    return n * settings.default.max_examples // BASE_EXAMPLES
