"""Agreement of predicted with teacher scores: correlations and the selection buckets (pure functions)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

BUCKETS = ("sensibility", "rationality", "discard")


def buckets(s: np.ndarray, r: np.ndarray, s_threshold: float = 5.0, r_threshold: float = 5.0) -> np.ndarray:
    """The paper's rule: sensibility = S > t_s and R < t_r; rationality = R > t_r; else discard."""
    out = np.full(len(s), "discard", dtype=object)
    out[(s > s_threshold) & (r < r_threshold)] = "sensibility"
    out[r > r_threshold] = "rationality"
    return out


def _corr(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    if np.std(pred) == 0 or np.std(true) == 0:
        return 0.0, 0.0
    return float(spearmanr(pred, true).statistic), float(pearsonr(pred, true).statistic)


def agreement(pred: np.ndarray, true: np.ndarray, s_threshold: float = 5.0,
              r_threshold: float = 5.0) -> dict[str, float]:
    """`pred`, `true`: arrays of shape (n, 2), columns S, R."""
    s_sp, s_pe = _corr(pred[:, 0], true[:, 0])
    r_sp, r_pe = _corr(pred[:, 1], true[:, 1])
    pb = buckets(pred[:, 0], pred[:, 1], s_threshold, r_threshold)
    tb = buckets(true[:, 0], true[:, 1], s_threshold, r_threshold)
    return {
        "n": float(len(true)),
        "spearman_s": s_sp, "pearson_s": s_pe, "spearman_r": r_sp, "pearson_r": r_pe,
        "bucket_accuracy": float(accuracy_score(tb, pb)),
        "bucket_macro_f1": float(f1_score(tb, pb, labels=list(BUCKETS), average="macro", zero_division=0)),
        "majority_accuracy": float(max(np.mean(tb == b) for b in BUCKETS)),
    }


def bucket_confusion(pred: np.ndarray, true: np.ndarray, s_threshold: float = 5.0,
                     r_threshold: float = 5.0) -> np.ndarray:
    """Rows: true bucket, columns: predicted bucket, in `BUCKETS` order."""
    pb = buckets(pred[:, 0], pred[:, 1], s_threshold, r_threshold)
    tb = buckets(true[:, 0], true[:, 1], s_threshold, r_threshold)
    return confusion_matrix(tb, pb, labels=list(BUCKETS))


def discard_kinds(true: np.ndarray, decided: np.ndarray | None = None, s_threshold: float = 5.0,
                  r_threshold: float = 5.0) -> dict[str, float]:
    """The teacher's discards by kind, and the judge's recall of each when its discard decisions `decided`
    (booleans) are given. The rule's strict inequalities discard every reply judged R exactly at the
    threshold, whatever its S ("at the gap"); the others were scored low (R below it, S at most t_s). On the
    paper's valid labels 282 of the 456 discards are at the gap, 269 of them with S > 5."""
    s, r = true[:, 0], true[:, 1]
    discard = buckets(s, r, s_threshold, r_threshold) == "discard"
    kinds = {"at_gap": discard & (r == r_threshold), "scored_low": discard & (r != r_threshold)}
    out: dict[str, float] = {"discards": int(discard.sum())}
    for name, mask in kinds.items():
        out[name] = int(mask.sum())
        if decided is not None:
            out[f"{name}_recall"] = float((mask & decided).sum() / max(int(mask.sum()), 1))
    return out

