"""The stacked judge: a second stage over the lexical judge (`selection/distill/lexical.py`).

The lexical judge's TF-IDF ridge predicts S and R from the ~4.6k valid-split scores; its discard head learns
from the ~32k train keep/discard labels, and its logit carries information about S that the small valid set
lacks (Spearman -0.49 with the paper's S on its own). The second stage is a ridge regression from (ridge S,
ridge R, discard logit, lengths) to S and R, fitted on out-of-fold first-stage predictions, and a bucket rule
whose thresholds are calibrated for bucket macro-F1 on out-of-fold predictions of the valid conversations it
was fitted on (the held-out valid conversations only measure it).

Pure functions here (numpy in, numpy out); fitting in `fit_stacked.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BUCKET_CODES = ("sensibility", "rationality", "discard")  # index = code
SENSIBILITY, RATIONALITY, DISCARD = 0, 1, 2
LOGIT_CLIP = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(q / (1.0 - q))


def stack_features(sr: np.ndarray, p_discard: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """Second-stage inputs: first-stage S and R, the discard head's logit, the lexical judge's lengths."""
    return np.column_stack([np.asarray(sr, dtype=np.float64), logit(p_discard),
                            np.asarray(dense, dtype=np.float64)])


def paper_codes(s: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The paper's buckets as codes: sensibility = S > 5 and R < 5; rationality = R > 5; else discard."""
    out = np.full(len(s), DISCARD, dtype=np.int8)
    out[(s > 5.0) & (r < 5.0)] = SENSIBILITY
    out[r > 5.0] = RATIONALITY
    return out


@dataclass(frozen=True)
class BucketRule:
    """The paper's rule with thresholds fitted to predictions: rationality = R > r_high; sensibility =
    S > s_min and R <= r_low; the rest (the paper's "R = 5" band and low S) is discarded. `p_max` also
    discards what the discard head gives P(discard) >= p_max (inf: never)."""

    s_min: float = 5.0
    r_low: float = 5.0
    r_high: float = 5.0
    p_max: float = float("inf")

    def codes(self, s: np.ndarray, r: np.ndarray, p: np.ndarray) -> np.ndarray:
        out = np.full(len(s), DISCARD, dtype=np.int8)
        out[(s > self.s_min) & (r <= self.r_low)] = SENSIBILITY
        out[r > self.r_high] = RATIONALITY
        out[np.asarray(p) >= self.p_max] = DISCARD
        return out

    def emitted(self, s: np.ndarray, r: np.ndarray) -> np.ndarray:
        """(n, 2) scores to store: shifted so that S > 5 and R > 5 mean what s_min and r_high mean here
        (a kept sample with stored R > 5 is rationality, as `selection.rule.bucket` decides it)."""
        return np.column_stack([s + (5.0 - self.s_min), r + (5.0 - self.r_high)])


def macro_f1(true: np.ndarray, pred: np.ndarray, n_classes: int = 3) -> float:
    """Macro-F1 over the bucket codes (fast, for grid searches; same as sklearn's with zero_division=0)."""
    f1 = []
    for c in range(n_classes):
        tp = float(np.sum((pred == c) & (true == c)))
        denom = float(np.sum(pred == c) + np.sum(true == c))
        f1.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def rule_grid(s: np.ndarray, r: np.ndarray, step: float = 0.1) -> Iterable[tuple[float, float, float]]:
    """(s_min, r_low, r_high) candidates within the predictions' central range, r_low <= r_high."""
    def values(x: np.ndarray, low: float, high: float, by: float) -> list[float]:
        lo, hi = (float(q) for q in np.quantile(x, [low, high]))
        return [round(float(v), 3) for v in np.arange(lo, hi, by)]

    r_vals = values(r, 0.2, 0.95, step)
    for s_min, r_low, r_high in itertools.product(values(s, 0.01, 0.5, 2 * step), r_vals, r_vals):
        if r_low <= r_high:
            yield float(s_min), float(r_low), float(r_high)


@dataclass(frozen=True)
class DiscardCheck:
    """Predictions on held-out train conversations with the paper's keep/discard labels there: a rule must
    discard them with at least `min_precision` and `min_recall` (the issue's goal: 0.3 and 0.5)."""

    s: np.ndarray
    r: np.ndarray
    p: np.ndarray
    labels: np.ndarray
    min_precision: float = 0.3
    min_recall: float = 0.5

    def passes(self, rule: BucketRule) -> bool:
        pred = rule.codes(self.s, self.r, self.p) == DISCARD
        tp = float(np.sum(pred & self.labels))
        return (tp >= self.min_precision * max(float(pred.sum()), 1.0)
                and tp >= self.min_recall * float(self.labels.sum()))


def calibrate_rule(s: np.ndarray, r: np.ndarray, p: np.ndarray, true_codes: np.ndarray,
                   p_grid: Iterable[float] = (float("inf"),), check: DiscardCheck | None = None,
                   step: float = 0.1) -> BucketRule:
    """The thresholds (and discard-head cut from `p_grid`) with the best bucket macro-F1 of the predictions
    (s, r, p) against `true_codes`, among the rules that pass `check`; without any, the plain rule."""
    best, best_rule = -1.0, BucketRule()
    for p_max in p_grid:
        for s_min, r_low, r_high in rule_grid(s, r, step):
            rule = BucketRule(s_min, r_low, r_high, float(p_max))
            score = macro_f1(true_codes, rule.codes(s, r, p))
            if score > best and (check is None or check.passes(rule)):
                best, best_rule = score, rule
    return best_rule


MODEL_FILE = "stacked.joblib"


@dataclass
class StackedModel:
    """The lexical judge (`base`), the second stage (`stacker`: stack features -> S, R) and the rule."""

    base: Any  # selection.distill.lexical.LexicalModel
    stacker: Any
    rule: BucketRule

    def raw_scores(self, rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Second-stage (S, R) (n, 2) and the discard head's P(discard) (n,) of lexical inputs."""
        from selection.distill.lexical import dense_features

        x = self.base.features.transform(rows)
        p = self.base.discard.predict_proba(x)[:, 1]
        first = np.asarray(self.base.scores.predict(x), dtype=np.float64)
        return np.asarray(self.stacker.predict(stack_features(first, p, dense_features(rows)))), p

    def predict(self, rows: Sequence[Any]) -> np.ndarray:
        """(n, 4): stored S and R (0..10, shifted as `BucketRule.emitted`), P(discard), discard (0/1)."""
        if not rows:
            return np.zeros((0, 4), dtype=np.float32)
        sr, p = self.raw_scores(rows)
        discard = self.rule.codes(sr[:, 0], sr[:, 1], p) == DISCARD
        out = np.clip(self.rule.emitted(sr[:, 0], sr[:, 1]), 0.0, 10.0)
        return np.column_stack([out, p, discard.astype(np.float64)]).astype(np.float32)

    def save(self, folder: Path) -> Path:
        from selection.distill.lexical import dump_model

        return dump_model(self, folder / MODEL_FILE)

    @staticmethod
    def load(folder: Path) -> StackedModel:
        from selection.distill.lexical import load_model

        return load_model(folder / MODEL_FILE, StackedModel)
