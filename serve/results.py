"""An experiment's results from its raw rows (pure: rows in, JSON-ready dict out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from empathy.stats import mean_ci
from serve.experiments import Experiment
from serve.live_results import attach_sequential
from serve.sequential import CSConfig
from serve.stats import Z95, Vote, bt_length_controlled, bt_with_bootstrap, pairwise_table, win_rates

OUTCOME_WINNER = {"a": "a", "b": "b", "tie": "tie", "both_bad": "tie"}


def between_arms(votes: Sequence[tuple[str, str, str]],
                 arm_of: dict[str, str | None]) -> list[tuple[str, str, str]]:
    """The raw votes between completions of two different arms of the experiment."""
    return [v for v in votes if (x := arm_of.get(v[0])) and (y := arm_of.get(v[1])) and x != y]


def _vote(raw: tuple[str, str, str], arm_of: dict[str, str | None]) -> Vote:
    return Vote(str(arm_of[raw[0]]), str(arm_of[raw[1]]), OUTCOME_WINNER[raw[2]])


def arm_votes(votes: Sequence[tuple[str, str, str]], arm_of: dict[str, str | None]) -> list[Vote]:
    """Votes between completions of two different arms of the experiment, as arm-level votes."""
    return [_vote(v, arm_of) for v in between_arms(votes, arm_of)]


def length_control(votes: Sequence[tuple[str, str, str]], arm_of: dict[str, str | None],
                   lengths: dict[str, int], arms: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bradley-Terry with the replies' length difference as a covariate, over the votes whose two replies
    have a stored length: per-arm Elo ratings with 95% intervals (empty without such votes) and the
    summary (`length_coef` > 0: the longer reply wins more often at equal strength)."""
    kept = [v for v in between_arms(votes, arm_of) if v[0] in lengths and v[1] in lengths]
    used = [_vote(v, arm_of) for v in kept]
    pairs = [(float(lengths[a]), float(lengths[b])) for a, b, _ in kept]
    summary: dict[str, Any] = {"votes": len(used), "length_coef": None, "length_coef_se": None,
                               "length_effect": "no votes with reply lengths yet"}
    if not used:
        return {}, summary
    fit = bt_length_controlled(used, pairs, arms)
    coef, se = fit["length_coef"], fit["length_coef_se"]
    effect = ("longer replies win more often" if coef - Z95 * se > 0 else "shorter replies win more often"
              if coef + Z95 * se < 0 else "no length effect shown")
    summary.update(length_coef=coef, length_coef_se=se, length_effect=effect)
    played = {v.a for v in used} | {v.b for v in used}
    return {arm: r for arm, r in fit["ratings"].items() if arm in played}, summary


def _reply_tokens(arm_of: dict[str, str | None], lengths: dict[str, int], arm: str) -> float | None:
    tokens = [n for cid, n in lengths.items() if arm_of.get(cid) == arm]
    return float(np.mean(tokens)) if tokens else None


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
    lengths: dict[str, int] = data.get("lengths") or {}
    controlled, length_summary = length_control(data["votes"], arm_of, lengths, arms)
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
            "bradley_terry_lc": controlled.get(arm.name),
            "reply_tokens_mean": _reply_tokens(arm_of, lengths, arm.name),
            **_latency(data["latency"], arm.name),
        })
    out = {"experiment": exp.name, "active": exp.active, "since": exp.created, "votes": len(votes),
           "arms": per_arm,
           "pairwise": pairwise_table(votes, arms), "length_control": length_summary}
    return attach_sequential(out, exp, ratings, votes, data["assigned"], sequential or CSConfig())
