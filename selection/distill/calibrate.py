"""Calibration of a discard probability into a keep/discard decision, and the metrics of a selection
against the paper's (pure functions, numpy in, numbers out)."""

from __future__ import annotations

from typing import Literal

import numpy as np

Calibration = Literal["f1", "fraction"]
BUCKETS = ("sensibility", "rationality", "discard")


def f1_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The probability threshold (discard when p >= t) with the best F1 of the discard class."""
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(y[order])
    k = np.arange(1, len(p) + 1)
    f1 = 2 * hits / (k + max(int(y.sum()), 1))
    best = int(np.argmax(f1))
    return float(p[order][best])


def fraction_threshold(p: np.ndarray, fraction: float) -> float:
    """The threshold that discards `fraction` of the samples."""
    if fraction <= 0:
        return float("inf")
    return float(np.quantile(p, 1.0 - fraction, method="higher"))


def calibrate(p: np.ndarray, y: np.ndarray, how: Calibration) -> float:
    """`f1`: best discard F1 on held-out labels; `fraction`: discard the labels' discard fraction."""
    if how == "f1":
        return f1_threshold(p, y)
    return fraction_threshold(p, float(np.mean(y)))


def rationality_shift(r_kept: np.ndarray, rationality_share: float, r_threshold: float = 5.0) -> float:
    """The shift of predicted R after which `R > r_threshold` holds for `rationality_share` of the kept
    samples (regression shrinks predictions toward the mean, so unshifted too few pass the threshold)."""
    if not len(r_kept) or not 0.0 < rationality_share < 1.0:
        return 0.0
    return float(r_threshold - np.quantile(r_kept, 1.0 - rationality_share))


def discard_pr(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of boolean discard decisions against boolean labels."""
    tp = float(np.sum(pred & true))
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float(true.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": float(len(true)), "discard_precision": precision, "discard_recall": recall,
            "discard_f1": f1, "discard_fraction": float(np.mean(pred)), "paper_discard_fraction":
            float(np.mean(true))}


def decide_buckets(s: np.ndarray, r: np.ndarray, discard: np.ndarray, r_threshold: float = 5.0
                   ) -> np.ndarray:
    """The selection with a discard decision: discarded ones go to discard, the kept ones to rationality
    when R > t_r and to sensibility otherwise."""
    out = np.where(r > r_threshold, "rationality", "sensibility").astype(object)
    out[discard] = "discard"
    return out


def bucket_fractions(b: np.ndarray) -> dict[str, float]:
    return {name: float(np.mean(b == name)) if len(b) else 0.0 for name in BUCKETS}
