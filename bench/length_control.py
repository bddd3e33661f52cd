"""Plain vs length-controlled Bradley-Terry on simulated arena votes where the longer reply wins more often.

    .venv/bin/python bench/length_control.py [--experiments 200] [--votes 1500]

Arm `x` writes longer replies (60-160 tokens) than arm `y` (20-120); each vote puts one of each on random
sides and the left one wins with P = sigmoid(4 * (len_l - len_r) / (len_l + len_r) + strength difference).
Two worlds: equal strengths, and `y` stronger by 0.4 logits (69.5 Elo). Per world the mean Elo gap y - x of
plain Bradley-Terry and of the length-controlled fit (`serve.results.experiment_results`, as the gateway
computes it), how often each 95% interval pair says the right arm is ahead, and how often the length-
controlled gap is within its intervals' reach of the truth.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from serve.experiments import Arm, Experiment
from serve.results import experiment_results

EXP = Experiment(name="len", arms=[Arm(name="x", model="base"), Arm(name="y", model="blend:0.5")])
ELO = 400 / math.log(10)


def simulate(rng: np.random.Generator, skill_y: float, n: int) -> dict[str, Any]:
    lx, ly = rng.integers(60, 161, n), rng.integers(20, 121, n)
    x_left = np.arange(n) % 2 == 1
    left, right = np.where(x_left, lx, ly), np.where(x_left, ly, lx)
    logit = 4 * (left - right) / (left + right) + np.where(x_left, -skill_y, skill_y)
    left_wins = rng.random(n) < 1 / (1 + np.exp(-logit))
    arm_of: dict[str, str | None] = {**{f"x{i}": "x" for i in range(n)}, **{f"y{i}": "y" for i in range(n)}}
    lengths = {**{f"x{i}": int(v) for i, v in enumerate(lx)}, **{f"y{i}": int(v) for i, v in enumerate(ly)}}
    votes = [((f"x{i}", f"y{i}") if x_left[i] else (f"y{i}", f"x{i}")) + ("a" if left_wins[i] else "b",)
             for i in range(n)]
    return {"arm_of": arm_of, "ratings": [], "votes": votes, "assigned": {}, "latency": [],
            "lengths": lengths}


def world(skill_y: float, experiments: int, votes: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    gaps: dict[str, list[float]] = {"plain": [], "lc": []}
    right: dict[str, int] = {"plain": 0, "lc": 0}
    for _ in range(experiments):
        res = experiment_results(EXP, simulate(rng, skill_y, votes), bootstrap_rounds=50)
        arms = {a["name"]: a for a in res["arms"]}
        for kind, key in (("plain", "bradley_terry"), ("lc", "bradley_terry_lc")):
            x, y = arms["x"][key], arms["y"][key]
            gaps[kind].append(y["rating"] - x["rating"])
            says_y = y["low"] > x["high"]
            says_none = not says_y and not x["low"] > y["high"]
            right[kind] += says_y if skill_y > 0 else says_none
    return {"true": skill_y * ELO, "plain_gap": float(np.mean(gaps["plain"])),
            "lc_gap": float(np.mean(gaps["lc"])), "lc_gap_sd": float(np.std(gaps["lc"])),
            "plain_right": right["plain"] / experiments, "lc_right": right["lc"] / experiments}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--votes", type=int, default=1500)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{args.experiments} experiments x {args.votes} votes; Elo gap = y - x")
    print("| world | true gap | plain BT gap | length-controlled gap (sd) | plain right "
          "| length-controlled right |")
    print("|---|---|---|---|---|---|")
    for label, skill in (("equal arms, x longer", 0.0), ("y better by 0.4 logits, x longer", 0.4)):
        r = world(skill, args.experiments, args.votes, seed=int(skill * 10))
        print(f"| {label} | {r['true']:.1f} | {r['plain_gap']:.1f} | {r['lc_gap']:.1f} "
              f"({r['lc_gap_sd']:.1f}) | {r['plain_right']:.0%} | {r['lc_right']:.0%} |")
    print(f"'right': the arms' 95% intervals separate toward the better arm (equal arms: they overlap); "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
