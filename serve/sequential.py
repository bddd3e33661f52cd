"""Anytime-valid statistics of live experiments: confidence sequences, sample-ratio mismatch, Holm.

A confidence sequence (CS) covers the true value at *every* number of observations at once with
probability >= 1 - alpha, so an experiment may be looked at after every vote and stopped whenever an arm
looks ahead. The boundary is the two-sided normal mixture of Howard et al. (2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", eq. 14): with mixture martingale

    M_n = (n rho^2 + 1)^(-1/2) * exp(n^2 rho^2 (mean - null)^2 / (2 sigma^2 (n rho^2 + 1)))

Ville's inequality gives P(exists n: M_n >= 1/alpha) <= alpha, so

    mean +- sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha)).

Two ways to choose sigma (setting `sequential_method`):

* ``gavi`` (default): sigma is the observations' estimated standard deviation -- the "generalized
  anytime-valid" asymptotic CS of Waudby-Smith et al. (2023) that GrowthBook uses; narrow when the
  variance is small (thumbs shares near 0 or 1), valid as the counts grow (checked by simulation in
  tests/serve/test_sequential_sim.py and bench/sequential_aa.py). The variance is shrunk towards the
  largest one a [0, 1] value can have with PRIOR_OBS pseudo-observations, and nothing is decided before
  each arm has `min_n` observations, so early all-equal votes do not give a zero-width interval.
* ``bounded``: sigma = 1/2, the sub-Gaussian constant of any value in [0, 1] (Hoeffding): exact at every
  n, wider.

`rho` is set through `tuning_n`, the number of observations at which the sequence is narrowest (like
GrowthBook's tuning parameter): rho = sqrt((-2 log alpha + log(1 - 2 log alpha)) / tuning_n).

All observations are on [0, 1]: thumbs 0/1, likert (1..5) as (v - 1) / 4, a pairwise vote 1 / 0 / 0.5 for a
win / loss / tie of the pair's first arm. Pure functions of arrays; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

Method = Literal["gavi", "bounded"]
PRIOR_OBS = 2.0
MAX_VAR = 0.25  # the largest variance of a value in [0, 1]


@dataclass(frozen=True)
class CSConfig:
    """How confidence sequences are computed (from the `sequential_*` settings)."""

    alpha: float = 0.05
    tuning_n: float = 1000.0
    method: Method = "gavi"
    min_n: int = 10

    @property
    def rho(self) -> float:
        return tuning_rho(self.alpha, self.tuning_n)


def tuning_rho(alpha: float, tuning_n: float) -> float:
    """The mixing parameter that makes the CS narrowest near `tuning_n` observations (Howard et al. 2021,
    eq. 16's approximation; GrowthBook's choice)."""
    la = -2 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1)) / tuning_n)


def halfwidth(n: np.ndarray | float, sigma: np.ndarray | float, alpha: np.ndarray | float,
              rho: float) -> np.ndarray:
    """Half-width of the normal-mixture CS of a mean of `n` observations with standard deviation `sigma`
    (NaN where n < 1)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        nr = n * rho * rho + 1
        out = np.asarray(sigma, dtype=float) * np.sqrt(2 * nr / (n * n * rho * rho)
                                                       * np.log(np.sqrt(nr) / alpha))
    return np.where(n >= 1, out, np.nan)


def mixture_p_value(diff: np.ndarray | float, n: np.ndarray | float, sigma: np.ndarray | float,
                    rho: float) -> np.ndarray:
    """Anytime-valid p-value 1 / M_n of `diff` = estimate - null (p < alpha exactly when the null is
    outside the CS); 1 where undefined."""
    n, diff, sigma = (np.asarray(v, dtype=float) for v in (n, diff, sigma))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nr = n * rho * rho + 1
        log_m = -0.5 * np.log(nr) + (n * diff * rho) ** 2 / (2 * sigma * sigma * nr)
        p = np.minimum(1.0, np.exp(-log_m))
    return np.where(np.isfinite(p) & (n >= 1), p, 1.0)


def shrunk_variance(total: np.ndarray, total_sq: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Variance from running sums, shrunk towards MAX_VAR by PRIOR_OBS pseudo-observations."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ss = np.maximum(total_sq - np.where(n > 0, total * total / n, 0.0), 0.0)
    return (ss + PRIOR_OBS * MAX_VAR) / (n + PRIOR_OBS)


def _sigma(total: np.ndarray, total_sq: np.ndarray, n: np.ndarray, method: Method) -> np.ndarray:
    if method == "bounded":
        return np.full(np.shape(n), 0.5)
    return np.sqrt(shrunk_variance(total, total_sq, n))


@dataclass(frozen=True)
class Trace:
    """A CS after each observation: estimate, low, high, anytime p-value against `null` (arrays; a
    bounded difference has its p-value after the last observation only)."""

    n: np.ndarray
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray
    null: float


def mean_trace(values: Sequence[float] | np.ndarray, cfg: CSConfig, null: float = 0.5) -> Trace:
    """The CS of the mean of `values` (in [0, 1], arrival order along the last axis) after each
    observation."""
    x = np.asarray(values, dtype=float)
    n = np.arange(1, x.shape[-1] + 1, dtype=float)
    total, total_sq = np.cumsum(x, axis=-1), np.cumsum(x * x, axis=-1)
    est = total / n
    sigma = _sigma(total, total_sq, n, cfg.method)
    half = halfwidth(n, sigma, cfg.alpha, cfg.rho)
    early = n < (1 if cfg.method == "bounded" else cfg.min_n)
    half = np.where(early, np.inf, half)
    p = np.where(early, 1.0, mixture_p_value(est - null, n, sigma, cfg.rho))
    return Trace(n, est, np.maximum(est - half, 0.0), np.minimum(est + half, 1.0), p, null)


def diff_trace(values: Sequence[float] | np.ndarray, is_a: Sequence[bool] | np.ndarray,
               cfg: CSConfig) -> Trace:
    """The CS of mean(A) - mean(B) after each observation of either arm (arrival order along the last
    axis, values in [0, 1]); infinite before both arms have `min_n` observations, NaN before both have one.

    gavi: the two-sample asymptotic CS with N = n_A + n_B and per-observation variance
    N (var_A / n_A + var_B / n_B). bounded: the sum of the arms' exact half-widths at alpha / 2 each."""
    x, a = np.asarray(values, dtype=float), np.asarray(is_a, dtype=bool)

    def run(v: np.ndarray) -> np.ndarray:
        return np.cumsum(v, axis=-1, dtype=float)

    na, nb = run(a), run(~a)
    sa, sb = run(np.where(a, x, 0.0)), run(np.where(a, 0.0, x))
    qa, qb = run(np.where(a, x * x, 0.0)), run(np.where(a, 0.0, x * x))
    with np.errstate(divide="ignore", invalid="ignore"):
        est = sa / na - sb / nb
    total = na + nb
    if cfg.method == "bounded":
        half = halfwidth(na, 0.5, cfg.alpha / 2, cfg.rho) + halfwidth(nb, 0.5, cfg.alpha / 2, cfg.rho)
        early = (na < 1) | (nb < 1)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma = np.sqrt(total * (shrunk_variance(sa, qa, na) / na + shrunk_variance(sb, qb, nb) / nb))
        half = halfwidth(total, sigma, cfg.alpha, cfg.rho)
        early = (na < cfg.min_n) | (nb < cfg.min_n)
    half = np.where(early, np.inf, half)
    if cfg.method == "bounded":  # by bisection: only after the last observation (NaN before)
        p = np.full(est.shape, np.nan)
        p[..., -1:] = _bounded_diff_p(np.nan_to_num(est[..., -1:]), na[..., -1:], nb[..., -1:], cfg.rho)
    else:
        p = mixture_p_value(est, total, sigma, cfg.rho)
    p = np.where(early, 1.0, p)
    return Trace(total, est, np.maximum(est - half, -1.0), np.minimum(est + half, 1.0), p, 0.0)


def _bounded_diff_p(est: np.ndarray, na: np.ndarray, nb: np.ndarray, rho: float) -> np.ndarray:
    """The smallest alpha at which the bounded difference CS excludes 0 (bisection on log alpha)."""
    lo, hi = np.full(est.shape, math.log(1e-12)), np.zeros(est.shape)
    for _ in range(40):
        mid = (lo + hi) / 2
        a = np.exp(mid)
        with np.errstate(invalid="ignore"):
            excluded = np.abs(est) > halfwidth(na, 0.5, a / 2, rho) + halfwidth(nb, 0.5, a / 2, rho)
        lo, hi = np.where(excluded, lo, mid), np.where(excluded, mid, hi)
    return np.exp(hi)


def decision(low: float, high: float, null: float) -> Literal["a", "b", "not yet"]:
    """`a` when the whole interval is above `null` (the pair's first arm ahead), `b` when below."""
    if low > null:
        return "a"
    if high < null:
        return "b"
    return "not yet"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down; each <= alpha exactly when Holm's procedure rejects it)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def sample_ratio_mismatch(observed: Mapping[str, float], weights: Mapping[str, float],
                          threshold: float = 0.001) -> dict[str, object]:
    """Chi-square test of the observed assignments per arm against the configured weights; `mismatch`
    when p < `threshold` (then the split is broken and the arms' results are not comparable)."""
    names = list(weights)
    obs = np.array([float(observed.get(n, 0)) for n in names])
    total = float(obs.sum())
    w = np.array([float(weights[n]) for n in names])
    expected = total * w / w.sum() if w.sum() > 0 else np.zeros_like(w)
    out: dict[str, object] = {"observed": dict(zip(names, obs.tolist(), strict=True)),
                              "expected": dict(zip(names, expected.tolist(), strict=True)),
                              "threshold": threshold, "chi2": None, "p_value": None, "mismatch": False}
    if len(names) < 2 or total <= 0:
        return out
    chi2, p = scipy_stats.chisquare(obs, expected)
    out.update(chi2=float(chi2), p_value=float(p), mismatch=bool(p < threshold))
    return out


def fixed_halfwidth(n: np.ndarray | float, sigma: np.ndarray | float, alpha: float = 0.05) -> np.ndarray:
    """The fixed-horizon normal interval's half-width (valid at one pre-planned n only), for comparison."""
    z = float(scipy_stats.norm.ppf(1 - alpha / 2))
    return z * np.asarray(sigma) / np.sqrt(np.asarray(n, dtype=float))
