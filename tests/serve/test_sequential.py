"""Confidence sequences, SRM and Holm on reference values (closed forms and scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy import stats as scipy_stats

from serve.sequential import (
    CSConfig,
    decision,
    diff_trace,
    halfwidth,
    holm,
    mean_trace,
    mixture_p_value,
    sample_ratio_mismatch,
    shrunk_variance,
    tuning_rho,
)


def _mixture_martingale(s: float, v: float, rho_h: float) -> float:
    """M = integral of exp(lambda S - lambda^2 V / 2) over lambda ~ N(0, 1 / rho_h), by quadrature."""
    scale = 1 / math.sqrt(rho_h)
    value, _ = integrate.quad(lambda lam: math.exp(lam * s - lam * lam * v / 2)
                              * scipy_stats.norm.pdf(lam, scale=scale), -60 * scale, 60 * scale, limit=400)
    return value


@pytest.mark.parametrize(("n", "sigma", "tuning_n"), [(10, 0.5, 1000), (250, 0.3, 1000), (5000, 0.45, 200)])
def test_boundary_is_where_the_mixture_martingale_reaches_one_over_alpha(n: int, sigma: float,
                                                                         tuning_n: float) -> None:
    alpha, rho = 0.05, tuning_rho(0.05, tuning_n)
    half = float(halfwidth(n, sigma, alpha, rho))
    # Howard et al.'s units: S = n * (mean - null), V = n sigma^2, mixing precision rho_h = sigma^2 / rho^2
    m = _mixture_martingale(n * half, n * sigma**2, sigma**2 / rho**2)
    assert m == pytest.approx(1 / alpha, rel=1e-6)
    assert float(mixture_p_value(half, n, sigma, rho)) == pytest.approx(alpha, rel=1e-9)
    outside, inside = mixture_p_value(half * 1.01, n, sigma, rho), mixture_p_value(half * 0.99, n, sigma, rho)
    assert float(outside) < alpha < float(inside)


def test_closed_form_halfwidth() -> None:
    # n = 100, sigma = 1/2, alpha = 0.05, rho = 0.1: 0.5 * sqrt(2 * 2 / 100 * log(sqrt(2) / 0.05))
    expected = 0.5 * math.sqrt(0.04 * math.log(math.sqrt(2) / 0.05))
    assert float(halfwidth(100, 0.5, 0.05, 0.1)) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(float(halfwidth(0, 0.5, 0.05, 0.1)))


def test_tuning_n_is_near_where_the_sequence_is_narrowest() -> None:
    for tuning_n in (100.0, 1000.0, 20000.0):
        best = optimize.minimize_scalar(lambda r, t=tuning_n: float(halfwidth(t, 1.0, 0.05, r)),
                                        bounds=(1e-5, 5.0), method="bounded", options={"xatol": 1e-9})
        assert tuning_rho(0.05, tuning_n) == pytest.approx(best.x, rel=0.05)


def test_sequence_is_wider_than_fixed_horizon_and_shrinks() -> None:
    rho = tuning_rho(0.05, 1000)
    n = np.array([10, 100, 1000, 10000])
    half = halfwidth(n, 0.5, 0.05, rho)
    fixed = 1.959964 * 0.5 / np.sqrt(n)
    assert np.all(half > fixed) and np.all(np.diff(half) < 0)
    assert half[2] / fixed[2] < 1.6  # at the tuning count the price of peeking is modest


def test_shrunk_variance() -> None:
    # values 1, 1, 1, 1: sum of squares about the mean 0, plus 2 pseudo-observations of variance 1/4
    assert float(shrunk_variance(np.array(4.0), np.array(4.0), np.array(4.0))) == pytest.approx(0.5 / 6)
    x = np.array([0.0, 1.0, 0.5, 0.25])
    ss = float(((x - x.mean()) ** 2).sum())
    assert float(shrunk_variance(np.array(x.sum()), np.array((x * x).sum()), np.array(4.0))) == \
        pytest.approx((ss + 0.5) / 6)


def test_mean_trace_bounded_is_the_exact_hoeffding_mixture() -> None:
    cfg = CSConfig(method="bounded", tuning_n=500)
    x = np.array([1, 0, 1, 1, 0.5, 1, 1, 0, 1, 1] * 30, dtype=float)
    tr = mean_trace(x, cfg)
    n = np.arange(1, 301)
    mean = np.cumsum(x) / n
    half = halfwidth(n, 0.5, 0.05, cfg.rho)
    assert np.allclose(tr.low, np.maximum(mean - half, 0))
    assert np.allclose(tr.high, np.minimum(mean + half, 1))
    assert tr.p_value[-1] == pytest.approx(float(mixture_p_value(mean[-1] - 0.5, 300, 0.5, cfg.rho)))


def test_mean_trace_gavi_waits_for_min_n() -> None:
    tr = mean_trace(np.ones(30), CSConfig(min_n=10))
    assert np.all(tr.low[:9] == 0) and np.all(tr.high[:9] == 1) and np.all(tr.p_value[:9] == 1)
    assert tr.low[-1] > 0.5 and decision(tr.low[-1], tr.high[-1], 0.5) == "a"


def test_diff_trace_matches_two_sample_formula() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random(400) < 0.6).astype(float)
    is_a = rng.random(400) < 0.5
    cfg = CSConfig()
    tr = diff_trace(x, is_a, cfg)
    a, b = x[is_a], x[~is_a]
    var_a = (((a - a.mean()) ** 2).sum() + 0.5) / (len(a) + 2)
    var_b = (((b - b.mean()) ** 2).sum() + 0.5) / (len(b) + 2)
    sigma = math.sqrt(400 * (var_a / len(a) + var_b / len(b)))
    half = float(halfwidth(400, sigma, 0.05, cfg.rho))
    assert tr.estimate[-1] == pytest.approx(a.mean() - b.mean())
    assert tr.low[-1] == pytest.approx(a.mean() - b.mean() - half)
    assert tr.high[-1] == pytest.approx(a.mean() - b.mean() + half)


def test_bounded_diff_p_value_agrees_with_its_interval() -> None:
    rng = np.random.default_rng(4)
    is_a = rng.random(3000) < 0.5
    x = np.where(is_a, rng.random(3000) < 0.7, rng.random(3000) < 0.6).astype(float)
    cfg = CSConfig(method="bounded")
    seen = set()
    for k in range(100, 3001, 100):
        tr = diff_trace(x[:k], is_a[:k], cfg)
        outside = bool(tr.low[-1] > 0 or tr.high[-1] < 0)
        assert outside == (tr.p_value[-1] < 0.05)
        seen.add(outside)
    assert seen == {True, False}


def test_decision() -> None:
    assert decision(0.01, 0.2, 0.0) == "a"
    assert decision(-0.3, -0.01, 0.0) == "b"
    assert decision(-0.1, 0.1, 0.0) == "not yet"
    assert decision(0.4, 0.7, 0.5) == "not yet"


def test_holm_known_values() -> None:
    # p = 0.01, 0.04, 0.03, 0.005 (m = 4): sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]
    assert holm([]) == []
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_srm_fires_on_a_skewed_split_and_not_on_a_fair_one() -> None:
    weights = {"a": 1.0, "b": 1.0}
    skewed = sample_ratio_mismatch({"a": 5300, "b": 4700}, weights)
    # chi2 = 2 * 300^2 / 5000 = 36
    assert skewed["chi2"] == pytest.approx(36.0) and skewed["mismatch"] is True
    assert skewed["p_value"] == pytest.approx(scipy_stats.chi2.sf(36.0, 1))
    fair = sample_ratio_mismatch({"a": 5040, "b": 4960}, weights)
    assert fair["mismatch"] is False and fair["p_value"] > 0.1
    uneven = {"a": 3.0, "b": 1.0}  # a 75/25 split that traffic follows is fine ...
    assert sample_ratio_mismatch({"a": 752, "b": 248}, uneven)["mismatch"] is False
    assert sample_ratio_mismatch({"a": 500, "b": 500}, uneven)["mismatch"] is True  # ... a 50/50 one is not
    three = sample_ratio_mismatch({"a": 100, "b": 100, "c": 40}, {"a": 1, "b": 1, "c": 1})
    assert three["mismatch"] is True and three["expected"] == {"a": 80.0, "b": 80.0, "c": 80.0}
    assert sample_ratio_mismatch({}, weights)["p_value"] is None


def test_srm_false_alarm_rate_on_fair_splits_is_about_the_threshold() -> None:
    rng = np.random.default_rng(5)
    a = rng.binomial(2000, 0.5, size=4000)
    alarms = sum(sample_ratio_mismatch({"a": int(k), "b": 2000 - int(k)}, {"a": 1, "b": 1})["mismatch"]
                 for k in a)
    assert alarms <= 15  # expected 4 of 4,000 at p < 0.001
