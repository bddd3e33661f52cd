"""Probe first turns (`tests/data/probes.jsonl`: ones that call for feeling, ones that call for practical
thinking): the router's expected sensibility weight per group and the difference with a bootstrap interval,
and the replies of several served models to a few probes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empathy.layout import grid_argmax

DEFAULT_PROBES = Path(__file__).resolve().parents[2] / "tests" / "data" / "probes.jsonl"


@dataclass(frozen=True)
class Probe:
    kind: str  # feeling | practical
    text: str


def read_probes(path: Path) -> list[Probe]:
    probes = [Probe(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    kinds = {p.kind for p in probes}
    if kinds != {"feeling", "practical"}:
        raise ValueError(f"{path}: probes need kinds 'feeling' and 'practical', found {sorted(kinds)}")
    return probes


def expected_weights(probs: np.ndarray, grid: Sequence[float]) -> np.ndarray:
    """E[a] under each row's distribution over the blend grid."""
    return np.asarray(probs, dtype=np.float64) @ np.asarray(grid, dtype=np.float64)


def difference_interval(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) with a percentile bootstrap interval (the groups resampled independently)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    boots = (rng.choice(a, (resamples, len(a))).mean(1) - rng.choice(b, (resamples, len(b))).mean(1))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def router_report(router: Any, probes: Sequence[Probe]) -> dict[str, Any]:
    """The router's expected sensibility weight for each probe group and the feeling - practical gap."""
    probs = router.predict_many([[{"role": "user", "content": p.text}] for p in probes])
    weights = expected_weights(probs, router.grid)
    kinds = np.array([p.kind for p in probes])
    feeling, practical = weights[kinds == "feeling"], weights[kinds == "practical"]
    diff, lo, hi = difference_interval(feeling, practical)
    chosen = np.asarray(grid_argmax(router.grid, probs))
    return {"n": {"feeling": len(feeling), "practical": len(practical)},
            "mean_weight": {"feeling": float(feeling.mean()), "practical": float(practical.mean())},
            "difference": diff, "ci95": [lo, hi],
            "argmax_mean": {"feeling": float(chosen[kinds == "feeling"].mean()),
                            "practical": float(chosen[kinds == "practical"].mean())}}


def replies(client: Any, models: Sequence[str], probes: Sequence[Probe], **params: Any
            ) -> list[dict[str, Any]]:
    """Each model's reply to each probe through an OpenAI-compatible endpoint (the gateway)."""
    out = []
    for probe in probes:
        row: dict[str, Any] = {"kind": probe.kind, "probe": probe.text}
        for model in models:
            response = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": probe.text}], **params)
            row[model] = response.choices[0].message.content
        out.append(row)
    return out
