"""Statistics of experiments: pure functions of counts and votes (unit-tested on known inputs); the mean
with a t interval is `empathy.stats.mean_ci`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Vote:
    """One pairwise comparison: `winner` is "a", "b" or "tie" (a both-bad vote counts as a tie)."""

    a: str
    b: str
    winner: str


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (fractional successes allowed: ties count half)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def win_matrix(votes: Sequence[Vote], players: Sequence[str]) -> np.ndarray:
    """W[i, j] = wins of i over j, a tie adding 1/2 to both."""
    index = {p: i for i, p in enumerate(players)}
    wins = np.zeros((len(players), len(players)))
    for v in votes:
        i, j = index[v.a], index[v.b]
        if v.winner == "a":
            wins[i, j] += 1
        elif v.winner == "b":
            wins[j, i] += 1
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    return wins


def win_rates(votes: Sequence[Vote], players: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each player's share of points over all its comparisons, with a Wilson interval."""
    wins = win_matrix(votes, players)
    out = {}
    for i, p in enumerate(players):
        n = float(wins[i].sum() + wins[:, i].sum())
        low, high = wilson(float(wins[i].sum()), n)
        out[p] = {"games": n, "win_rate": float(wins[i].sum() / n) if n else 0.0, "low": low, "high": high}
    return out


def bradley_terry(wins: np.ndarray, prior: float = 0.01, iters: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths by Hunter's MM algorithm, normalised to geometric mean 1.

    `prior` adds that many virtual ties between every pair so a player that never won (or never lost)
    keeps a finite strength.
    """
    k = wins.shape[0]
    w = wins + prior * 0.5 * (1 - np.eye(k))
    games = w + w.T
    total_wins = w.sum(axis=1)
    p = np.ones(k)
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = np.where(denom > 0, total_wins / np.maximum(denom, 1e-300), p)
        new = new / math.exp(float(np.mean(np.log(np.maximum(new, 1e-300)))))
        if np.max(np.abs(new - p)) < tol:
            return new
        p = new
    return p


def elo(strengths: np.ndarray) -> np.ndarray:
    """Strengths on the Elo scale Chatbot Arena reports (400 points = 10x odds), centred on 1000."""
    return 1000 + 400 * np.log10(strengths)


def bt_with_bootstrap(votes: Sequence[Vote], players: Sequence[str], rounds: int = 200,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Elo-scaled BT ratings and 95% percentile intervals from resampling the votes with replacement."""
    point = elo(bradley_terry(win_matrix(votes, players)))
    if not votes:
        return {p: {"rating": float(point[i]), "low": float(point[i]), "high": float(point[i])}
                for i, p in enumerate(players)}
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, len(players)))
    for r in range(rounds):
        picked = [votes[i] for i in rng.integers(0, len(votes), len(votes))]
        samples[r] = elo(bradley_terry(win_matrix(picked, players)))
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    return {p: {"rating": float(point[i]), "low": float(low[i]), "high": float(high[i])}
            for i, p in enumerate(players)}


def pairwise_table(votes: Sequence[Vote], players: Sequence[str]) -> list[dict[str, object]]:
    """For every pair with votes: win rate of the first over the second with a Wilson interval."""
    wins = win_matrix(votes, players)
    rows: list[dict[str, object]] = []
    for i, a in enumerate(players):
        for j in range(i + 1, len(players)):
            n = float(wins[i, j] + wins[j, i])
            if n == 0:
                continue
            low, high = wilson(float(wins[i, j]), n)
            rows.append({"a": a, "b": players[j], "games": n, "a_win_rate": float(wins[i, j] / n),
                         "low": low, "high": high})
    return rows


def length_feature(lengths: Sequence[tuple[float, float]]) -> np.ndarray:
    """Per vote (len_a - len_b) / (len_a + len_b), standardised (Arena's normalised length difference)."""
    arr = np.asarray(lengths, dtype=float).reshape(-1, 2)
    total = arr.sum(axis=1)
    z = np.where(total > 0, (arr[:, 0] - arr[:, 1]) / np.maximum(total, 1e-12), 0.0)
    return z / (float(z.std()) or 1.0)


def _logistic_fit(x: np.ndarray, y: np.ndarray, ridge: float, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Ridge logistic regression with fractional targets by Newton's method: coefficients, covariance."""
    beta = np.zeros(x.shape[1])
    penalty = ridge * np.eye(x.shape[1])
    info = penalty
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(x @ beta)))
        info = x.T @ (x * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(info, x.T @ (y - p) - penalty @ beta)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta, np.linalg.inv(info)


def bt_length_controlled(votes: Sequence[Vote], lengths: Sequence[tuple[float, float]],
                         players: Sequence[str], ridge: float = 1e-3, iters: int = 50) -> dict[str, Any]:
    """Bradley-Terry with the replies' length difference as a covariate (like Chatbot Arena's style
    control): P(a beats b) = sigmoid(beta_a - beta_b + gamma * z), z from `length_feature`; a tie counts
    half a win. Ratings on the Elo scale (centred on 1000) with 95% intervals from the inverse
    information, and `length_coef` gamma (> 0: the longer reply wins more often at equal strength)."""
    k = len(players)
    index = {p: i for i, p in enumerate(players)}
    x = np.zeros((len(votes), k + 1))
    for row, v in enumerate(votes):
        x[row, index[v.a]], x[row, index[v.b]] = 1.0, -1.0
    x[:, k] = length_feature(lengths)
    y = np.array([1.0 if v.winner == "a" else 0.0 if v.winner == "b" else 0.5 for v in votes])
    beta, cov = _logistic_fit(x, y, ridge, iters)
    centre = np.eye(k) - 1.0 / k  # ratings relative to the players' mean
    half = Z95 * np.sqrt(np.maximum(np.diag(centre @ cov[:k, :k] @ centre.T), 0.0))
    scale = 400 / math.log(10)
    rating = 1000 + scale * (centre @ beta[:k])
    return {"ratings": {p: {"rating": float(rating[i]), "low": float(rating[i] - scale * half[i]),
                            "high": float(rating[i] + scale * half[i])} for i, p in enumerate(players)},
            "length_coef": float(beta[k]), "length_coef_se": float(math.sqrt(cov[k, k]))}
