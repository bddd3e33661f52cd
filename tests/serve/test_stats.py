"""Statistics of experiments on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from empathy.stats import mean_ci
from serve.experiments import Arm, Experiment
from serve.results import arm_votes, experiment_results
from serve.stats import Vote, bradley_terry, bt_with_bootstrap, pairwise_table, wilson, win_matrix


def test_mean_ci_matches_t_interval() -> None:
    out = mean_ci([1, 2, 3, 4, 5])
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
    assert out["mean"] == 3 and out["low"] == pytest.approx(3 - half, 1e-6)
    assert out["high"] == pytest.approx(3 + half, 1e-6)
    assert mean_ci([]) == {"n": 0, "mean": None, "low": None, "high": None}
    assert mean_ci([4])["low"] is None


def test_wilson_known_values() -> None:
    low, high = wilson(8, 10)  # textbook: 0.4902 .. 0.9433
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(0, 20)
    assert low == 0.0 and 0 < high < 0.2


def test_ties_count_half() -> None:
    wins = win_matrix([Vote("x", "y", "tie"), Vote("x", "y", "a")], ["x", "y"])
    assert wins.tolist() == [[0.0, 1.5], [0.5, 0.0]]


def test_bradley_terry_two_players_closed_form() -> None:
    # With wins 3:1 the MLE strength ratio is exactly 3.
    p = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]), prior=0.0)
    assert p[0] / p[1] == pytest.approx(3.0, rel=1e-6)


def test_bradley_terry_recovers_order_of_constructed_votes() -> None:
    true = {"a": 4.0, "b": 2.0, "c": 1.0, "d": 0.5}
    rng = np.random.default_rng(1)
    names = list(true)
    votes = []
    for _ in range(1500):
        i, j = rng.choice(4, 2, replace=False)
        a, b = names[i], names[j]
        votes.append(Vote(a, b, "a" if rng.random() < true[a] / (true[a] + true[b]) else "b"))
    p = bradley_terry(win_matrix(votes, names))
    assert sorted(names, key=lambda n: -p[names.index(n)]) == names
    assert p[0] / p[1] == pytest.approx(2.0, rel=0.25)
    boot = bt_with_bootstrap(votes, names, rounds=50)
    for n in names:
        assert boot[n]["low"] <= boot[n]["rating"] <= boot[n]["high"]
    assert boot["a"]["low"] > boot["d"]["high"]


def test_pairwise_table_and_results() -> None:
    exp = Experiment(name="ab", arms=[Arm(name="x", model="base"), Arm(name="y", model="blend:0.5")])
    arm_of = {"c1": "x", "c2": "y", "c3": "x", "c4": "y"}
    raw_votes = [("c1", "c2", "a"), ("c3", "c4", "a"), ("c2", "c3", "both_bad"), ("c1", "c3", "a")]
    votes = arm_votes(raw_votes, arm_of)
    assert len(votes) == 3  # the x-vs-x vote says nothing about arms
    table = pairwise_table(votes, ["x", "y"])
    assert table == [{"a": "x", "b": "y", "games": 3.0, "a_win_rate": pytest.approx(2.5 / 3),
                      "low": pytest.approx(wilson(2.5, 3)[0]), "high": pytest.approx(wilson(2.5, 3)[1])}]
    ratings = [("c1", 1.0, "thumbs"), ("c2", 0.0, "thumbs"), ("c3", 5.0, "likert")]
    data = {"arm_of": arm_of, "ratings": ratings,
            "votes": raw_votes, "assigned": {"x": 2}, "latency": [("x", 10.0, 5.0), ("y", 20.0, None)]}
    res = experiment_results(exp, data, bootstrap_rounds=20)
    x, y = res["arms"]
    assert x["assigned_users"] == 2 and x["completions"] == 2 and x["thumbs"]["mean"] == 1.0
    assert x["likert"]["mean"] == 5.0 and y["thumbs"]["mean"] == 0.0
    assert x["bradley_terry"]["rating"] > y["bradley_terry"]["rating"]
    assert x["ttft_ms_p50"] == 5.0 and y["ttft_ms_p50"] is None
