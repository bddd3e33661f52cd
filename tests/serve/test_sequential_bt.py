"""Bradley-Terry with reply-length control (Arena-style covariate) against closed forms, scipy and a
simulation where the longer reply wins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from serve.stats import Vote, bradley_terry, bt_length_controlled, elo, length_feature, win_matrix


def test_equal_lengths_reduce_to_plain_bradley_terry() -> None:
    votes = [Vote("x", "y", "a")] * 3 + [Vote("x", "y", "b")]
    out = bt_length_controlled(votes, [(100, 100)] * 4, ["x", "y"], ridge=1e-9)
    diff = out["ratings"]["x"]["rating"] - out["ratings"]["y"]["rating"]
    assert diff == pytest.approx(400 * math.log10(3), rel=1e-4)  # MLE odds 3:1
    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    strength = {"a": 2.0, "b": 1.0, "c": 0.5}
    votes = []
    for _ in range(600):
        i, j = rng.choice(3, 2, replace=False)
        p = strength[names[i]] / (strength[names[i]] + strength[names[j]])
        outcome = "a" if rng.random() < p else "tie" if rng.random() < 0.2 else "b"
        votes.append(Vote(names[i], names[j], outcome))
    mm = elo(bradley_terry(win_matrix(votes, names), prior=0.0))
    fit = bt_length_controlled(votes, [(50, 50)] * len(votes), names, ridge=1e-9)
    assert [fit["ratings"][n]["rating"] for n in names] == pytest.approx(list(mm), abs=0.05)


def test_matches_scipy_minimisation_of_the_same_likelihood() -> None:
    rng = np.random.default_rng(1)
    votes = [Vote(*("x", "y") if rng.random() < 0.5 else ("y", "x"), str(rng.choice(["a", "b", "tie"])))
             for _ in range(300)]
    lengths = [(float(rng.integers(20, 200)), float(rng.integers(20, 200))) for _ in votes]
    ridge = 1e-3
    fit = bt_length_controlled(votes, lengths, ["x", "y"], ridge=ridge)
    z = length_feature(lengths)
    sign = np.array([1.0 if v.a == "x" else -1.0 for v in votes])
    y = np.array([1.0 if v.winner == "a" else 0.0 if v.winner == "b" else 0.5 for v in votes])

    def nll(params: np.ndarray) -> float:
        bx, by, gamma = params
        eta = sign * (bx - by) + gamma * z
        return float(np.sum(np.logaddexp(0, eta) - y * eta) + ridge / 2 * np.sum(params**2))

    ref = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    assert fit["length_coef"] == pytest.approx(ref[2], abs=1e-5)
    diff = fit["ratings"]["x"]["rating"] - fit["ratings"]["y"]["rating"]
    assert diff == pytest.approx(400 / math.log(10) * (ref[0] - ref[1]), abs=1e-3)


def test_length_control_removes_the_advantage_of_longer_replies() -> None:
    rng = np.random.default_rng(2)
    votes, lengths = [], []
    for _ in range(3000):  # equal arms; x writes longer replies (not always); longer replies win more often
        len_x, len_y = max(rng.normal(260, 80), 5), max(rng.normal(160, 80), 5)
        x_wins = rng.random() < 1 / (1 + math.exp(-4 * (len_x - len_y) / (len_x + len_y)))
        if rng.random() < 0.5:
            votes.append(Vote("x", "y", "a" if x_wins else "b"))
            lengths.append((len_x, len_y))
        else:
            votes.append(Vote("y", "x", "b" if x_wins else "a"))
            lengths.append((len_y, len_x))
    plain = elo(bradley_terry(win_matrix(votes, ["x", "y"])))
    assert plain[0] - plain[1] > 50  # naive BT: x looks better
    fit = bt_length_controlled(votes, lengths, ["x", "y"])
    x, y = fit["ratings"]["x"], fit["ratings"]["y"]
    # with two players the difference's interval is twice x's: it covers 0
    assert abs(x["rating"] - y["rating"]) < x["high"] - x["low"]
    assert abs(x["rating"] - y["rating"]) < 0.3 * (plain[0] - plain[1])
    assert fit["length_coef"] - 1.96 * fit["length_coef_se"] > 0
