"""Confidence sequences by simulation: looked at after every 10 observations, A/A experiments rarely decide
(the fixed-horizon interval looked at the same way often does), and real differences get decided."""

from __future__ import annotations

import numpy as np
import pytest

from serve.sequential import CSConfig, diff_trace, fixed_halfwidth, mean_trace

EXPERIMENTS, OBSERVATIONS = 300, 1000
LOOKS = np.arange(9, OBSERVATIONS, 10)


def _ever_decided(low: np.ndarray, high: np.ndarray, null: float) -> bool:
    return bool(np.any((low[LOOKS] > null) | (high[LOOKS] < null)))


@pytest.mark.parametrize("method", ["gavi", "bounded"])
def test_aa_win_rate_false_positives_under_continuous_monitoring(method: str) -> None:
    rng = np.random.default_rng(11)
    cfg = CSConfig(method=method)  # type: ignore[arg-type]
    seq = fixed = 0
    for _ in range(EXPERIMENTS):
        # votes between equal arms: win 40%, loss 40%, tie 20% (counted 1, 0, 1/2)
        x = rng.choice([1.0, 0.0, 0.5], size=OBSERVATIONS, p=[0.4, 0.4, 0.2])
        tr = mean_trace(x, cfg)
        seq += _ever_decided(tr.low, tr.high, 0.5)
        n = np.arange(1, OBSERVATIONS + 1)
        sd = np.sqrt(np.maximum(np.cumsum(x * x) / n - tr.estimate**2, 1e-12))
        half = fixed_halfwidth(n, sd)
        fixed += _ever_decided(tr.estimate - half, tr.estimate + half, 0.5)
    assert seq / EXPERIMENTS <= 0.05
    assert fixed / EXPERIMENTS > 0.15


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_aa_thumbs_difference_false_positives(p: float) -> None:
    rng = np.random.default_rng(12)
    cfg = CSConfig()
    seq = 0
    for _ in range(EXPERIMENTS):
        x = (rng.random(OBSERVATIONS) < p).astype(float)
        tr = diff_trace(x, rng.random(OBSERVATIONS) < 0.5, cfg)
        seq += _ever_decided(tr.low, tr.high, 0.0)
    assert seq / EXPERIMENTS <= 0.05


def test_a_real_difference_is_decided_for_the_right_arm() -> None:
    rng = np.random.default_rng(13)
    cfg = CSConfig()
    decided = []
    for _ in range(50):
        is_a = rng.random(4000) < 0.5
        x = np.where(is_a, rng.random(4000) < 0.6, rng.random(4000) < 0.45).astype(float)
        tr = diff_trace(x, is_a, cfg)
        wrong = np.any(tr.high < 0)
        decided.append(bool(np.any(tr.low > 0)) and not wrong)
    assert np.mean(decided) >= 0.9
