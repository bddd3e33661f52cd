"""Statistics both serve (experiment results) and training (router and MoE metrics) report: pure maths."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Mean with a Student-t confidence interval (None bounds with fewer than two values)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None}
    mean = float(np.mean(values))
    if n < 2:
        return {"n": n, "mean": mean, "low": None, "high": None}
    sem = float(np.std(values, ddof=1)) / math.sqrt(n)
    half = float(scipy_stats.t.ppf(0.5 + level / 2, n - 1)) * sem
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half}
