"""The arena puts the two arms on random sides (the left answer is `completion_a` of the stored vote)."""

from __future__ import annotations

import random

from serve.sequential import sample_ratio_mismatch
from ui.arena import Battle, Contender, choose_pair, vote_payload


def test_sides_are_randomized_for_experiment_arms_and_fallback_models() -> None:
    rng = random.Random(3)
    exp = [{"name": "ab", "active": True, "arms": [{"name": "x", "model": "base", "weight": 1},
                                                   {"name": "y", "model": "empathy", "weight": 1}]}]
    left = [choose_pair(exp, [], rng).left.arm for _ in range(2000)]
    counts = {"x": left.count("x"), "y": left.count("y")}
    assert sample_ratio_mismatch(counts, {"x": 1, "y": 1})["mismatch"] is False
    assert 900 < counts["x"] < 1100
    models = ["base", "empathy", "empathy-sensibility", "empathy-rationality"]
    firsts = [choose_pair([], models, rng).left.model for _ in range(2000)]
    assert all(350 < firsts.count(m) < 650 for m in models)


def test_the_left_answer_is_completion_a() -> None:
    battle = Battle(Contender("base", "x"), Contender("empathy", "y"), experiment="ab")
    battle.ids["left"][0], battle.ids["right"][0] = "cmpl-left", "cmpl-right"
    assert vote_payload(battle, "left") == {"type": "pairwise", "completion_a": "cmpl-left",
                                            "completion_b": "cmpl-right", "outcome": "a"}
