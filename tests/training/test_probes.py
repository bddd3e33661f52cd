"""Probe first turns and the statistics over them (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.probes import DEFAULT_PROBES, difference_interval, expected_weights, read_probes


def test_probe_file_has_both_kinds() -> None:
    probes = read_probes(DEFAULT_PROBES)
    counts = {kind: sum(p.kind == kind for p in probes) for kind in ("feeling", "practical")}
    assert counts["feeling"] >= 20 and counts["practical"] >= 20
    assert len({p.text for p in probes}) == len(probes)


def test_expected_weights() -> None:
    probs = np.array([[1.0, 0, 0], [0, 0, 1.0], [0.5, 0, 0.5]])
    assert expected_weights(probs, [0.0, 0.5, 1.0]).tolist() == [0.0, 1.0, 0.5]


def test_difference_interval_covers_the_truth_and_excludes_zero_when_apart() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.6, 0.1, 40), rng.normal(0.5, 0.1, 40)
    diff, lo, hi = difference_interval(a, b)
    assert diff == pytest.approx(a.mean() - b.mean()) and lo < diff < hi
    assert lo > 0 and lo < 0.1 < hi + 0.05
    same = difference_interval(a, a.copy())
    assert same[1] < 0 < same[2]
