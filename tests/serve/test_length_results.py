"""Length-controlled Bradley-Terry in an experiment's results (pure: rows with reply lengths in, dict out).

Simulated arena votes where the longer reply wins more often: arm `x` writes longer replies than `y`.
Plain Bradley-Terry credits `x` with its length; the length-controlled ratings do not.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from serve.experiments import Arm, Experiment
from serve.results import experiment_results

EXP = Experiment(name="len", arms=[Arm(name="x", model="base"), Arm(name="y", model="blend:0.5")])


def simulate(skill_y: float, n: int = 1500, seed: int = 0) -> dict[str, Any]:
    """`n` votes of an `x` reply (60-160 tokens) against a `y` one (20-120) on random sides; P(left wins) =
    sigmoid(4 * normalised length difference + strength difference), `y` stronger by `skill_y` logits."""
    rng = np.random.default_rng(seed)
    arm_of: dict[str, str | None] = {}
    lengths: dict[str, int] = {}
    votes = []
    for i in range(n):
        cx, cy = f"x{i}", f"y{i}"
        arm_of[cx], arm_of[cy] = "x", "y"
        lengths[cx], lengths[cy] = int(rng.integers(60, 161)), int(rng.integers(20, 121))
        a, b = (cx, cy) if i % 2 else (cy, cx)
        logit = 4 * (lengths[a] - lengths[b]) / (lengths[a] + lengths[b]) + (skill_y if a == cy else -skill_y)
        votes.append((a, b, "a" if rng.random() < 1 / (1 + np.exp(-logit)) else "b"))
    return {"arm_of": arm_of, "ratings": [], "votes": votes, "assigned": {}, "latency": [],
            "lengths": lengths}


def ratings(res: dict[str, Any], key: str) -> dict[str, dict[str, float]]:
    return {arm["name"]: arm[key] for arm in res["arms"]}


def test_equal_arms_differ_only_by_length_and_length_control_sees_it() -> None:
    res = experiment_results(EXP, simulate(0.0), bootstrap_rounds=20)
    json.dumps(res, allow_nan=False)
    plain, controlled = ratings(res, "bradley_terry"), ratings(res, "bradley_terry_lc")
    assert plain["x"]["rating"] - plain["y"]["rating"] > 100  # the longer arm looks much stronger
    assert abs(controlled["x"]["rating"] - controlled["y"]["rating"]) < 40
    assert all(r["low"] < 1000 < r["high"] for r in controlled.values())
    lc = res["length_control"]
    assert lc["votes"] == 1500 and lc["length_coef"] > 5 * lc["length_coef_se"] > 0
    assert lc["length_effect"] == "longer replies win more often"
    tokens = {arm["name"]: arm["reply_tokens_mean"] for arm in res["arms"]}
    assert 105 < tokens["x"] < 115 and 65 < tokens["y"] < 75


def test_a_better_but_shorter_arm_wins_only_under_length_control() -> None:
    res = experiment_results(EXP, simulate(0.4, seed=1), bootstrap_rounds=20)
    plain, controlled = ratings(res, "bradley_terry"), ratings(res, "bradley_terry_lc")
    assert plain["x"]["rating"] > plain["y"]["rating"]
    assert controlled["y"]["low"] > controlled["x"]["high"]
    true_gap = 400 / np.log(10) * 0.4  # 69.5 Elo
    assert abs(controlled["y"]["rating"] - controlled["x"]["rating"] - true_gap) < 30


def test_only_votes_whose_replies_both_have_a_length_are_controlled() -> None:
    data = simulate(0.0, n=200)
    none = experiment_results(EXP, {**data, "lengths": {}}, bootstrap_rounds=5)
    json.dumps(none, allow_nan=False)
    assert [arm["bradley_terry_lc"] for arm in none["arms"]] == [None, None]
    assert [arm["reply_tokens_mean"] for arm in none["arms"]] == [None, None]
    assert none["length_control"] == {"votes": 0, "length_coef": None, "length_coef_se": None,
                                      "length_effect": "no votes with reply lengths yet"}
    some = {cid: n for cid, n in data["lengths"].items() if not cid.startswith("x1")}  # x1, x10-x19, x100..
    partial = experiment_results(EXP, {**data, "lengths": some}, bootstrap_rounds=5)
    assert partial["length_control"]["votes"] == 200 - 111
    assert partial["votes"] == 200
