"""The router's `reply-kind` features: how rational a reply the context calls for, as the judge scores it.

Why: the experts' training data are split by the judge's R score (rationality: R > 5; sensibility: S > 5 and
R <= 5), and the blend that explains a gold reply best follows that reply's R: on the standard profile's
1,500 router samples, the sensibility expert's NLL gain over the rationality expert's has Spearman 0.64 with
the reply's judged R. A softmax regression from 389 context features straight to NLL targets on 1,500 samples
learns nothing that survives cross-validation (it falls back to the best fixed blend). But the judge has
scored every train reply, so two small stages replace it:

1. a ridge regression context -> judged R of the reply, fitted on tens of thousands of scored replies;
2. a least-squares line per blend, NLL_k = alpha_k + beta_k * R_hat, fitted on the NLL rows; the router
   serves the blend with the lowest predicted NLL, and its probabilities are softmax(-tau * NLL_hat) with tau
   the mean reply length in tokens (the per-token NLL gaps, as a reply-level posterior over the blends).

Both stages are linear in the standardised context features, so they collapse to one `RouterWeights`: the
artifact and the gateway stay as they are. Pure numpy; the I/O is in `training.router.kind_data`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from empathy.router import RouterWeights

ALPHA_GRID = (1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass(frozen=True)
class KindModel:
    """Ridge regression over standardised features: ((x - mean) / std) @ A + a, one column per score."""

    mean: np.ndarray
    std: np.ndarray
    A: np.ndarray
    a: np.ndarray

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, dtype=np.float64) - self.mean) / self.std) @ self.A + self.a


def fit_kind(features: np.ndarray, scores: np.ndarray, alpha: float) -> KindModel:
    """Closed-form ridge (intercept unpenalised): context features -> the judge's scores of the replies."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need matching 2-D features and scores with >= 2 rows, got {x.shape} and {y.shape}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    mean, std = x.mean(0), x.std(0)
    std = np.where(std < 1e-8, 1.0, std)
    z = (x - mean) / std
    y_mean = y.mean(0)
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y_mean))
    return KindModel(mean=mean, std=std, A=coef, a=y_mean)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def choose_alpha(features: np.ndarray, scores: np.ndarray, folds: np.ndarray,
                 candidates: tuple[float, ...] = ALPHA_GRID) -> tuple[float, dict[str, float]]:
    """The ridge penalty with the best mean cross-validated Spearman over the score columns."""
    results: dict[str, float] = {}
    for alpha in candidates:
        rhos = []
        for k in np.unique(folds):
            test = folds == k
            if test.all() or not test.any():
                continue
            pred = fit_kind(features[~test], scores[~test], alpha).predict(features[test])
            rhos += [spearman(pred[:, j], scores[test][:, j]) for j in range(scores.shape[1])]
        results[f"{alpha:g}"] = float(np.mean(rhos)) if rhos else float("nan")
    best = max(results, key=lambda key: results[key])
    return float(best), results


def fit_nll_head(inputs: np.ndarray, nll: np.ndarray, tau: float) -> RouterWeights:
    """Least squares NLL_k = c_k + inputs @ B_k per blend k, as router weights whose logits are -tau * NLL_hat
    (so the most probable blend is the one with the lowest predicted NLL)."""
    x = np.asarray(inputs, dtype=np.float64)
    y = np.asarray(nll, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) <= x.shape[1]:
        raise ValueError(f"need more rows than inputs and matching 2-D inputs and NLL, got {x.shape} and "
                         f"{y.shape}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones(len(x)), x]), y, rcond=None)
    return RouterWeights(mean=np.zeros(x.shape[1], np.float32), std=np.ones(x.shape[1], np.float32),
                         W=(-tau * coef[1:]).astype(np.float32), b=(-tau * coef[0]).astype(np.float32))


def collapse(kind: KindModel, head: RouterWeights) -> RouterWeights:
    """One softmax regression equal to `head` applied to `kind`'s predictions.

    head: logits = ((k - m2) / s2) @ W2 + b2 with k = z @ A + a and z = (x - mean) / std, so
    logits = z @ (A / s2[None, :] @ W2) + ((a - m2) / s2) @ W2 + b2.
    """
    m2, s2 = np.asarray(head.mean, np.float64), np.asarray(head.std, np.float64)
    w2, b2 = np.asarray(head.W, np.float64), np.asarray(head.b, np.float64)
    weights = (kind.A / s2[None, :]) @ w2
    bias = ((kind.a - m2) / s2) @ w2 + b2
    return RouterWeights(mean=kind.mean.astype(np.float32), std=kind.std.astype(np.float32),
                         W=weights.astype(np.float32), b=bias.astype(np.float32))
