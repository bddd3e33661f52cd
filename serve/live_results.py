"""The anytime-valid part of an experiment's results: per arm and per pair of arms the confidence sequence
beside the fixed-horizon interval, a Holm-corrected decision per pair, the sample-ratio check, and each
pair's sequence over observations for the dashboard (pure: rows in arrival order in, JSON-ready dict out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from serve.experiments import Experiment
from serve.sequential import (
    CSConfig,
    Trace,
    decision,
    diff_trace,
    fixed_halfwidth,
    holm,
    mean_trace,
    sample_ratio_mismatch,
)
from serve.stats import Vote, wilson

TRACE_POINTS = 120
Rating = tuple[str | None, float, str]  # (arm, value, scale)
SCALES = {"thumbs": (0.0, 1.0), "likert": (1.0, 4.0)}  # value = offset + span * x, x in [0, 1]


def unit_value(value: float, scale: str) -> float:
    """A rating on [0, 1]: thumbs as is, likert 1..5 as (v - 1) / 4."""
    offset, span = SCALES[scale]
    return min(1.0, max(0.0, (value - offset) / span))


def _num(value: float, span: float = 1.0, offset: float = 0.0) -> float | None:
    return round(offset + span * float(value), 6) if np.isfinite(value) else None


def _last(tr: Trace, span: float = 1.0, offset: float = 0.0) -> dict[str, Any]:
    return {"n": int(tr.n[-1]), "estimate": _num(tr.estimate[-1], span, offset),
            "low": _num(tr.low[-1], span, offset), "high": _num(tr.high[-1], span, offset)}


def _trace(tr: Trace, span: float) -> dict[str, list[float | None]]:
    """At most TRACE_POINTS points of the sequence (always the last one), in the metric's units."""
    idx = np.unique(np.linspace(0, len(tr.n) - 1, min(TRACE_POINTS, len(tr.n))).round().astype(int))
    return {"n": [int(v) for v in tr.n[idx]], "estimate": [_num(v, span) for v in tr.estimate[idx]],
            "low": [_num(v, span) for v in tr.low[idx]], "high": [_num(v, span) for v in tr.high[idx]]}


def _points(v: Vote, arm: str) -> float:
    """The vote for `arm`: 1 won, 0 lost, 1/2 tie."""
    mine = "a" if v.a == arm else "b"
    return 1.0 if v.winner == mine else 0.5 if v.winner == "tie" else 0.0


def arm_sequences(ratings: Sequence[Rating], votes: Sequence[Vote], arm: str,
                  cfg: CSConfig) -> dict[str, dict[str, Any] | None]:
    """The CS of the arm's mean thumbs, likert (on 1..5) and share of vote points; None without data."""
    out: dict[str, dict[str, Any] | None] = {}
    for scale, (offset, span) in SCALES.items():
        x = [unit_value(v, scale) for a, v, s in ratings if a == arm and s == scale]
        out[scale] = _last(mean_trace(x, cfg), span, offset) if x else None
    points = [_points(v, arm) for v in votes if arm in (v.a, v.b)]
    out["win_rate"] = _last(mean_trace(points, cfg)) if points else None
    return out


def _pair_row(a: str, b: str, metric: str, tr: Trace, span: float, fixed: tuple[float, float] | None,
              cfg: CSConfig) -> dict[str, Any]:
    return {"a": a, "b": b, "metric": metric, **_last(tr, span),
            "null": tr.null * span, "p_value": float(np.nan_to_num(tr.p_value[-1], nan=1.0)),
            "fixed_low": None if fixed is None else fixed[0] * span,
            "fixed_high": None if fixed is None else fixed[1] * span,
            "trace": _trace(tr, span), "alpha": cfg.alpha}


def _vote_pair(votes: Sequence[Vote], a: str, b: str, cfg: CSConfig,
               fixed: Mapping[tuple[str, str], tuple[float, float]]) -> dict[str, Any] | None:
    x = [_points(v, a) for v in votes if {v.a, v.b} == {a, b}]
    if not x:
        return None
    return _pair_row(a, b, "win_rate", mean_trace(x, cfg, null=0.5), 1.0, fixed.get((a, b)), cfg)


def _rating_pair(ratings: Sequence[Rating], a: str, b: str, scale: str,
                 cfg: CSConfig) -> dict[str, Any] | None:
    rows = [(unit_value(v, s), arm == a) for arm, v, s in ratings if s == scale and arm in (a, b)]
    if not any(is_a for _, is_a in rows) or all(is_a for _, is_a in rows):
        return None
    x, is_a = (np.array(c) for c in zip(*rows, strict=True))
    return _pair_row(a, b, scale, diff_trace(x, is_a, cfg), SCALES[scale][1], _welch(x[is_a], x[~is_a]), cfg)


def _welch(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float] | None:
    """The fixed-horizon normal interval of mean(a) - mean(b) (unequal variances)."""
    if len(xa) < 2 or len(xb) < 2:
        return None
    diff = float(xa.mean() - xb.mean())
    half = float(fixed_halfwidth(1, np.sqrt(xa.var(ddof=1) / len(xa) + xb.var(ddof=1) / len(xb))))
    return diff - half, diff + half


def pair_sequences(arms: Sequence[str], votes: Sequence[Vote], ratings: Sequence[Rating], cfg: CSConfig,
                   fixed: Mapping[tuple[str, str], tuple[float, float]]) -> list[dict[str, Any]]:
    """Per pair of arms and metric (win rate vs 0.5, thumbs and likert differences) the CS now, its trace,
    and a decision that is Holm-corrected over the pairs of that metric."""
    rows: list[dict[str, Any]] = []
    for metric in ("win_rate", "thumbs", "likert"):
        found = [r for a, b in combinations(arms, 2)
                 if (r := (_vote_pair(votes, a, b, cfg, fixed) if metric == "win_rate"
                           else _rating_pair(ratings, a, b, metric, cfg))) is not None]
        for row, adjusted in zip(found, holm([r["p_value"] for r in found]), strict=True):
            side = decision(row["low"], row["high"], row["null"]) if adjusted < cfg.alpha else "not yet"
            row["p_holm"] = adjusted
            row["decision"] = f"{row[side]} ahead" if side in ("a", "b") else "not yet"
        rows.extend(found)
    return rows


def position_bias(votes: Sequence[Vote], cfg: CSConfig) -> dict[str, Any]:
    """How often the first-shown (left, `completion_a`) answer wins, ties half, with its confidence
    sequence and Wilson interval: 0.5 when position does not matter. The arena puts the arms on random
    sides, so arm quality averages out; `left_share` per arm shows that the sides were balanced."""
    x = [_points(v, v.a) for v in votes]
    out: dict[str, Any] = {"votes": len(x), "left_win_rate": None, "low": None, "high": None,
                           "fixed_low": None, "fixed_high": None, "p_value": None, "biased": False}
    if x:
        tr = mean_trace(x, cfg, null=0.5)
        low, high = wilson(sum(x), len(x))
        out.update(left_win_rate=_num(tr.estimate[-1]), low=_num(tr.low[-1]), high=_num(tr.high[-1]),
                   fixed_low=low, fixed_high=high, p_value=float(tr.p_value[-1]),
                   biased=decision(tr.low[-1], tr.high[-1], 0.5) != "not yet")
    shown = Counter(v.a for v in votes) + Counter(v.b for v in votes)
    out["left_share"] = {arm: round(Counter(v.a for v in votes)[arm] / k, 4) for arm, k in shown.items()}
    return out


def attach_sequential(results: dict[str, Any], exp: Experiment, ratings: Sequence[Rating],
                      votes: Sequence[Vote], assigned: Mapping[str, int], cfg: CSConfig,
                      srm_threshold: float = 0.001) -> dict[str, Any]:
    """`results` (the fixed-horizon ones) with the sequences added: per arm `sequence`, per row of
    `pairwise` its `cs_low` / `cs_high` / `decision`, `pairs` (every metric, with traces), the settings used
    (`sequential`), the left/right position bias of votes (`position`) and the sample-ratio check (`srm`)."""
    arms = [a.name for a in exp.arms]
    for row in results["arms"]:
        row["sequence"] = arm_sequences(ratings, votes, row["name"], cfg)
    fixed = {(r["a"], r["b"]): (r["low"], r["high"]) for r in results["pairwise"]}
    pairs = pair_sequences(arms, votes, ratings, cfg, fixed)
    by_pair = {(p["a"], p["b"]): p for p in pairs if p["metric"] == "win_rate"}
    for row in results["pairwise"]:
        seq = by_pair.get((row["a"], row["b"]), {})
        row.update(cs_low=seq.get("low"), cs_high=seq.get("high"), decision=seq.get("decision", "not yet"))
    results["pairs"] = pairs
    results["sequential"] = {"method": cfg.method, "alpha": cfg.alpha, "tuning_n": cfg.tuning_n,
                             "min_n": cfg.min_n, "rho": cfg.rho, "correction": "holm"}
    results["position"] = position_bias(votes, cfg)
    results["srm"] = sample_ratio_mismatch(assigned, {a.name: a.weight for a in exp.arms}, srm_threshold)
    return results
