"""Seeds and example counts of the hypothesis property tests.

CI runs every property with its fixed seed and example count, so a run is
reproducible and its time known. A deeper search is one environment away:
ATTNCC_PROPERTY_SEED=N replaces every property's seed, ATTNCC_PROPERTY_SCALE=K
multiplies every property's example count (docs/build.md: "Deeper property
runs"). The seed in use is printed by each property test."""
from __future__ import annotations

import os


def property_seed(default: int) -> int:
    """The seed of a property test: ATTNCC_PROPERTY_SEED where it is set."""
    return int(os.environ.get("ATTNCC_PROPERTY_SEED", default))


def examples(count: int) -> int:
    """A property's example count, times ATTNCC_PROPERTY_SCALE (default 1)."""
    return count * max(1, int(os.environ.get("ATTNCC_PROPERTY_SCALE", "1")))
