"""An experiment's results JSON carries the sequences beside the fixed-horizon intervals, Holm-corrected
decisions per pair and the sample-ratio check (pure: built rows in, dict out)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serve.experiments import Arm, Experiment
from serve.live_results import pair_sequences, position_bias, unit_value
from serve.results import experiment_results
from serve.sequential import CSConfig, holm
from serve.stats import Vote


def _data(rng: np.random.Generator, arms: dict[str, float], votes: int, assigned: dict[str, int],
          wins: dict[tuple[str, str], float]) -> dict[str, object]:
    """Completions c0.. spread over the arms; thumbs with the arm's share; votes with the pair's win rate."""
    names = list(arms)
    arm_of = {f"c{i}": names[i % len(names)] for i in range(3000)}
    ratings = [(cid, float(rng.random() < arms[arm]), "thumbs") for cid, arm in arm_of.items()]
    ratings += [(cid, float(rng.integers(1, 6)), "likert") for cid in list(arm_of)[:60]]
    by_arm = {a: [c for c, x in arm_of.items() if x == a] for a in names}
    raw = []
    for _ in range(votes):
        (a, b), p = list(wins.items())[rng.integers(len(wins))]
        outcome = "a" if rng.random() < p else "b"
        pick_a, pick_b = by_arm[a][rng.integers(len(by_arm[a]))], by_arm[b][rng.integers(len(by_arm[b]))]
        raw.append((pick_a, pick_b, outcome))
    return {"arm_of": arm_of, "ratings": ratings, "votes": raw, "assigned": assigned,
            "latency": [(a, 10.0, None) for a in arm_of.values()]}


def test_results_json_two_arms_decides_and_checks_the_split() -> None:
    rng = np.random.default_rng(0)
    exp = Experiment(name="ab", arms=[Arm(name="x", model="base"), Arm(name="y", model="blend:0.5")])
    data = _data(rng, {"x": 0.7, "y": 0.5}, 600, {"x": 5300, "y": 4700}, {("x", "y"): 0.65})
    res = experiment_results(exp, data, bootstrap_rounds=5)
    json.dumps(res, allow_nan=False)  # every number finite
    assert res["srm"]["mismatch"] is True and res["srm"]["p_value"] < 0.001
    x = res["arms"][0]
    assert x["sequence"]["thumbs"]["n"] == 1500
    seq = x["sequence"]["thumbs"]
    assert seq["low"] < x["thumbs"]["low"] < x["thumbs"]["high"] < seq["high"]
    assert 1 <= x["sequence"]["likert"]["low"] <= x["sequence"]["likert"]["estimate"] <= 5
    (row,) = res["pairwise"]
    assert row["cs_low"] < row["low"] and row["decision"] == "x ahead"
    metrics = {p["metric"]: p for p in res["pairs"]}
    assert metrics["thumbs"]["decision"] == "x ahead" and metrics["thumbs"]["fixed_low"] > 0
    assert metrics["likert"]["decision"] == "not yet"
    trace = metrics["win_rate"]["trace"]
    assert trace["n"][-1] == 600 and len(trace["n"]) <= 120 and trace["low"][-1] == metrics["win_rate"]["low"]
    assert res["sequential"]["method"] == "gavi"

    fair = experiment_results(exp, {**data, "assigned": {"x": 5040, "y": 4960}}, bootstrap_rounds=5)
    assert fair["srm"]["mismatch"] is False


def test_more_than_two_arms_holm_corrects_the_pairwise_decisions() -> None:
    rng = np.random.default_rng(1)
    arms = ["a", "b", "c", "d"]
    votes = []
    for _ in range(2400):
        i, j = rng.choice(4, 2, replace=False)
        p = 0.62 if (arms[i], arms[j]) == ("a", "b") else 0.38 if (arms[i], arms[j]) == ("b", "a") else 0.5
        votes.append(Vote(arms[i], arms[j], "a" if rng.random() < p else "b"))
    rows = pair_sequences(arms, votes, [], CSConfig(), {})
    assert len(rows) == 6 and all(r["metric"] == "win_rate" for r in rows)
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p_value"] for r in rows]))
    assert all(r["p_holm"] >= r["p_value"] for r in rows)
    decided = {(r["a"], r["b"]): r["decision"] for r in rows}
    assert decided[("a", "b")] == "a ahead"
    assert all(d == "not yet" for pair, d in decided.items() if pair != ("a", "b"))


def test_holm_can_hold_back_a_decision_the_single_sequence_would_make() -> None:
    rng = np.random.default_rng(2)
    arms = ["a", "b", "c"]
    # find a seed-determined case where a pair's own p is below alpha but Holm's adjusted one is not
    for _ in range(200):
        votes = [Vote("a", "b", "a" if rng.random() < 0.58 else "b") for _ in range(rng.integers(300, 900))]
        votes += [Vote("a", "c", "a" if rng.random() < 0.5 else "b") for _ in range(300)]
        rows = pair_sequences(arms, votes, [], CSConfig(), {})
        ab = rows[0]
        if ab["p_value"] < 0.05 <= ab["p_holm"]:
            assert ab["low"] > 0.5 and ab["decision"] == "not yet"
            return
    pytest.fail("no case where Holm held a decision back")


def test_unit_values() -> None:
    assert unit_value(1, "likert") == 0 and unit_value(5, "likert") == 1 and unit_value(3, "likert") == 0.5
    assert unit_value(1, "thumbs") == 1


def _arena_votes(rng: np.random.Generator, left_edge: float, count: int) -> list[Vote]:
    """Arms x (better: 60% head to head) and y on random sides; the left answer gets `left_edge` more."""
    votes = []
    for _ in range(count):
        left, right = ("x", "y") if rng.random() < 0.5 else ("y", "x")
        p_left = (0.6 if left == "x" else 0.4) + left_edge
        outcome = rng.choice(["a", "b", "tie"], p=[p_left - 0.05, 0.95 - p_left, 0.1])
        votes.append(Vote(left, right, str(outcome)))
    return votes


def test_position_bias_is_estimated_and_flagged() -> None:
    rng = np.random.default_rng(8)
    biased = position_bias(_arena_votes(rng, 0.12, 1500), CSConfig())
    assert biased["biased"] is True and biased["low"] > 0.5
    assert biased["left_win_rate"] == pytest.approx(0.62, abs=0.04)
    assert biased["fixed_low"] > biased["low"] and biased["fixed_high"] < biased["high"]
    assert biased["left_share"]["x"] == pytest.approx(0.5, abs=0.04)
    fair = position_bias(_arena_votes(rng, 0.0, 1500), CSConfig())
    assert fair["biased"] is False and fair["low"] < 0.5 < fair["high"]
    assert position_bias([], CSConfig())["left_win_rate"] is None
