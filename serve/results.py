"""An experiment's results from its raw rows (pure: rows in, JSON-ready dict out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from serve.experiments import Experiment
from serve.live_results import attach_sequential
from serve.sequential import CSConfig
from serve.stats import Vote, bt_with_bootstrap, mean_ci, pairwise_table, win_rates

OUTCOME_WINNER = {"a": "a", "b": "b", "tie": "tie", "both_bad": "tie"}


def arm_votes(votes: Sequence[tuple[str, str, str]], arm_of: dict[str, str | None]) -> list[Vote]:
    """Votes between completions of two different arms of the experiment, as arm-level votes."""
    out = []
    for a, b, outcome in votes:
        arm_a, arm_b = arm_of.get(a), arm_of.get(b)
        if arm_a and arm_b and arm_a != arm_b:
            out.append(Vote(arm_a, arm_b, OUTCOME_WINNER[outcome]))
    return out


def _latency(rows: Sequence[tuple[str | None, float, float | None]], arm: str) -> dict[str, float | None]:
    lat = [r[1] for r in rows if r[0] == arm]
    ttft = [r[2] for r in rows if r[0] == arm and r[2] is not None]
    return {"latency_ms_p50": float(np.median(lat)) if lat else None,
            "ttft_ms_p50": float(np.median(ttft)) if ttft else None}


def experiment_results(exp: Experiment, data: dict[str, Any], bootstrap_rounds: int = 200,
                       sequential: CSConfig | None = None) -> dict[str, Any]:
    """Fixed-horizon results with the anytime-valid sequences, decisions and sample-ratio check beside
    them (`data` rows in arrival order)."""
    arms = [a.name for a in exp.arms]
    arm_of: dict[str, str | None] = data["arm_of"]
    ratings = [(arm_of.get(cid), value, scale) for cid, value, scale in data["ratings"]]
    votes = arm_votes(data["votes"], arm_of)
    rates = win_rates(votes, arms)
    strengths = bt_with_bootstrap(votes, arms, rounds=bootstrap_rounds)
    per_arm = []
    for arm in exp.arms:
        per_arm.append({
            "name": arm.name, "model": arm.model, "weight": arm.weight,
            "assigned_users": int(data["assigned"].get(arm.name, 0)),
            "completions": sum(1 for a in arm_of.values() if a == arm.name),
            "thumbs": mean_ci([v for a, v, s in ratings if a == arm.name and s == "thumbs"]),
            "likert": mean_ci([v for a, v, s in ratings if a == arm.name and s == "likert"]),
            "win_rate": rates[arm.name],
            "bradley_terry": strengths[arm.name],
            **_latency(data["latency"], arm.name),
        })
    out = {"experiment": exp.name, "active": exp.active, "since": exp.created, "votes": len(votes),
           "arms": per_arm,
           "pairwise": pairwise_table(votes, arms)}
    return attach_sequential(out, exp, ratings, votes, data["assigned"], sequential or CSConfig())
