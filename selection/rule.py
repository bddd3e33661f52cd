"""The selection rule: a pure function of a sample's (S, R) scores with the thresholds as parameters.

Paper default: sensibility set = S > 5 and R < 5; rationality set = R > 5; the rest is discarded. The full
set (the baseline) is every scored sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Bucket = Literal["sensibility", "rationality", "discard"]
BUCKETS: tuple[Bucket, ...] = ("sensibility", "rationality", "discard")
SUBSETS = ("sensibility", "rationality", "full", "discard")


@dataclass(frozen=True)
class Thresholds:
    sensibility: float = 5.0
    rationality: float = 5.0


def bucket(sensibility: float, rationality: float, thresholds: Thresholds = Thresholds()) -> Bucket:
    """Which expert's training set a reply with scores (S, R) belongs to."""
    if rationality > thresholds.rationality:
        return "rationality"
    if sensibility > thresholds.sensibility and rationality < thresholds.rationality:
        return "sensibility"
    return "discard"


def fractions(buckets: Iterable[Bucket]) -> dict[str, float]:
    """Share of each bucket (0 when there is nothing)."""
    counts = Counter(buckets)
    total = sum(counts.values())
    return {name: (counts[name] / total if total else 0.0) for name in BUCKETS}
