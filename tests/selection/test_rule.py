"""The selection rule is a pure function of (S, R) with the thresholds as parameters."""

from __future__ import annotations

import pytest

from selection.rule import Thresholds, bucket, fractions


@pytest.mark.parametrize(
    ("s", "r", "expected"),
    [(8, 2, "sensibility"), (8, 6, "rationality"), (2, 8, "rationality"), (8, 5, "discard"),
     (5, 3, "discard"), (3, 3, "discard"), (5.5, 4.9, "sensibility")],
)
def test_paper_rule(s: float, r: float, expected: str) -> None:
    assert bucket(s, r) == expected


def test_thresholds_are_parameters() -> None:
    assert bucket(7, 6, Thresholds(sensibility=6, rationality=7)) == "sensibility"
    assert bucket(7, 8, Thresholds(sensibility=6, rationality=7)) == "rationality"


def test_fractions() -> None:
    assert fractions(["sensibility", "sensibility", "discard", "rationality"]) == {
        "sensibility": 0.5, "rationality": 0.25, "discard": 0.25}
    assert fractions([]) == {"sensibility": 0.0, "rationality": 0.0, "discard": 0.0}
