"""The selection rule: a pure function of a sample's (S, R) scores with the thresholds as parameters.

Paper default: sensibility set = S > 5 and R < 5; rationality set = R > 5; the rest is discarded. The full
set (the baseline) is every scored sample.

A judge may also decide keep/discard itself (the lexical distilled judge's calibrated discard head): it
writes `{"p_discard": p, "discard": true|false}` as the score's raw text. Then a discarded sample is
discarded, and a kept one goes to rationality when R > t_r, else to sensibility.
"""

from __future__ import annotations

import json
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


def decision_raw(p_discard: float, threshold: float) -> str:
    """The raw text of a score that carries a keep/discard decision (discard when p_discard >= threshold)."""
    return decision_json(p_discard, bool(p_discard >= threshold))


def decision_json(p_discard: float, discard: bool) -> str:
    """The raw text of a score with the judge's own keep/discard decision."""
    return json.dumps({"p_discard": round(float(p_discard), 4), "discard": bool(discard)})


def discard_decision(raw: str) -> bool | None:
    """The judge's own keep/discard decision in a score's raw text, or None (decide by the scores)."""
    if not raw.startswith('{"p_discard"'):
        return None
    try:
        value = json.loads(raw).get("discard")
    except (json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, bool) else None


def bucket(sensibility: float, rationality: float, thresholds: Thresholds = Thresholds(),
           discard: bool | None = None) -> Bucket:
    """Which expert's training set a reply with scores (S, R) belongs to; `discard` is the judge's own
    keep/discard decision when it made one."""
    if discard is not None:
        if discard:
            return "discard"
        return "rationality" if rationality > thresholds.rationality else "sensibility"
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
