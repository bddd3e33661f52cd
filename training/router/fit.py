"""Pure maths of the router: soft targets, hold-out by conversation, softmax regression, metrics."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from empathy.router import RouterWeights, softmax
from empathy.stats import mean_ci


def soft_targets(nll: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of -NLL / T over the grid: the blend that explains the gold reply best wins."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return softmax(-np.asarray(nll, dtype=np.float64) / temperature)


def conv_unit(conv: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) per conversation, so all its turns land on one side."""
    return int(hashlib.sha256(f"{seed}:{conv}".encode()).hexdigest()[:12], 16) / 16**12


def holdout_mask(conv_ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """True for held-out samples; whole conversations go to one side (their turns share context)."""
    return np.array([conv_unit(c, seed) < fraction for c in conv_ids], dtype=bool)


def _loss_and_grad(params: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    n, d = x.shape
    k = y.shape[1]
    w, b = params[:d * k].reshape(d, k), params[d * k:]
    p = softmax(x @ w + b)
    loss = -float(np.sum(y * np.log(np.clip(p, 1e-12, None)))) / n + 0.5 * l2 * float(np.sum(w * w))
    diff = (p - y) / n
    grad = np.concatenate([(x.T @ diff + l2 * w).ravel(), diff.sum(0)])
    return loss, grad


def fit_softmax_regression(features: np.ndarray, targets: np.ndarray, l2: float = 1e-2,
                           max_iter: int = 500) -> RouterWeights:
    """Multinomial logistic regression trained on soft targets (cross-entropy), L2 on the weights.

    Features are standardised first (mean/std stored with the weights), so one l2 fits all feature scales.
    """
    from scipy.optimize import minimize

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need matching non-empty 2-D features and targets, got {x.shape} and {y.shape}")
    mean, std = x.mean(0), x.std(0)
    std = np.where(std < 1e-8, 1.0, std)
    z = (x - mean) / std
    d, k = z.shape[1], y.shape[1]
    # Start from the best constant model: bias = log of the mean target distribution.
    init = np.concatenate([np.zeros(d * k), np.log(np.clip(y.mean(0), 1e-12, None))])
    result = minimize(_loss_and_grad, init, args=(z, y, l2), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter})
    w, b = result.x[:d * k].reshape(d, k), result.x[d * k:]
    return RouterWeights(mean=mean.astype(np.float32), std=std.astype(np.float32),
                         W=w.astype(np.float32), b=b.astype(np.float32))


L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 1e2, 1e3, 1e4)


def fold_of(conv_ids: Sequence[str], folds: int, seed: int = 1) -> np.ndarray:
    """Fold number of each sample; whole conversations stay in one fold."""
    return np.array([int(conv_unit(c, seed) * folds) for c in conv_ids], dtype=int)


def cv_choice_nll(features: np.ndarray, nll: np.ndarray, targets: np.ndarray, folds: np.ndarray,
                  l2: float) -> float:
    """Mean NLL of the router's argmax choice on each fold, fitted on the other folds."""
    total, count = 0.0, 0
    for k in np.unique(folds):
        test = folds == k
        if test.all() or not test.any():
            continue
        weights = fit_softmax_regression(features[~test], targets[~test], l2=l2)
        choice = weights.probs(features[test]).argmax(1)
        total += float(nll[test][np.arange(int(test.sum())), choice].sum())
        count += int(test.sum())
    return total / max(count, 1)


def choose_l2(features: np.ndarray, nll: np.ndarray, targets: np.ndarray, conv_ids: Sequence[str],
              candidates: Sequence[float] = L2_GRID, folds: int = 3) -> tuple[float, dict[str, float]]:
    """The L2 penalty whose routing choices have the lowest cross-validated NLL.

    The largest penalties reduce the router to its bias, i.e. to the best fixed blend of the training
    data, so when the context carries no usable signal the search falls back to that instead of
    routing on noise. Ties (within 1e-4 nats) go to the stronger penalty.
    """
    fold = fold_of(conv_ids, folds)
    scores = {float(l2): cv_choice_nll(features, nll, targets, fold, float(l2)) for l2 in candidates}
    best = min(scores.values())
    chosen = max(l2 for l2, score in scores.items() if score <= best + 1e-4)
    return chosen, {f"{l2:g}": round(score, 6) for l2, score in scores.items()}


def nearest_index(grid: Sequence[float], weights: np.ndarray) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64)
    return np.abs(np.asarray(weights)[:, None] - g[None, :]).argmin(1)


def routing_metrics(probs: np.ndarray, nll: np.ndarray, grid: Sequence[float]) -> dict[str, object]:
    """Mean NLL (per reply token, averaged over samples) of each fixed blend, the router and the oracle.

    `router_argmax` uses the most probable blend; `router_expected` the blend nearest to the expected
    weight sum(p * a) (only grid blends exist to serve it).
    """
    rows = np.arange(len(nll))
    argmax = probs.argmax(1)
    expected = nearest_index(grid, probs @ np.asarray(grid, dtype=np.float64))
    means = nll.mean(0)
    best = int(means.argmin())
    return {
        "n": len(nll),
        "fixed": {f"{w:g}": float(means[i]) for i, w in enumerate(grid)},
        "best_fixed": f"{grid[best]:g}",
        "router_argmax": float(nll[rows, argmax].mean()),
        "router_expected": float(nll[rows, expected].mean()),
        "oracle": float(nll.min(1).mean()),
        # Paired per sample (same replies, two choices): negative means the router is better. The best fixed
        # blend is picked on these same samples, so the interval is, if anything, unfair to the router.
        "router_minus_best_fixed": mean_ci((nll[rows, argmax] - nll[:, best]).tolist()),
        "choice_counts": {f"{w:g}": int((argmax == i).sum()) for i, w in enumerate(grid)},
        "oracle_counts": {f"{w:g}": int((nll.argmin(1) == i).sum()) for i, w in enumerate(grid)},
    }


# A head fits router weights on (inputs, NLL rows, their conversation ids): the softmax regression below
# for the `context` features, `training.router.kind.fit_nll_head` for `reply-kind`.
Head = Callable[[np.ndarray, np.ndarray, Sequence[str]], RouterWeights]


def softmax_head(temperature: float, l2: float | None) -> Head:
    """Softmax regression on the soft targets softmax(-NLL / T); L2 by cross-validation when `l2` is None."""
    def fit(inputs: np.ndarray, nll: np.ndarray, conv_ids: Sequence[str]) -> RouterWeights:
        targets = soft_targets(nll, temperature)
        penalty = l2 if l2 is not None else choose_l2(inputs, nll, targets, conv_ids)[0]
        return fit_softmax_regression(inputs, targets, l2=penalty)

    return fit


def crossfit_metrics(inputs: np.ndarray, nll: np.ndarray, conv_ids: Sequence[str], grid: Sequence[float],
                     head: Head, folds: int = 5, seed: int = 7) -> dict[str, object]:
    """Every sample routed by a router fitted without its conversation (K folds by conversation), against
    the best fixed blend of the other folds. Paired over all samples, so its interval is tighter than the
    hold-out's; neither choice ever saw the sample it is scored on."""
    fold = fold_of(conv_ids, folds, seed)
    choice = np.zeros(len(nll), dtype=int)
    fixed = np.zeros(len(nll), dtype=int)
    for k in np.unique(fold):
        test = fold == k
        if test.all():
            raise ValueError("cross-fitting needs at least two conversations")
        weights = head(inputs[~test], nll[~test], [c for c, t in zip(conv_ids, test, strict=True) if not t])
        choice[test] = weights.probs(inputs[test]).argmax(1)
        fixed[test] = int(nll[~test].mean(0).argmin())
    rows = np.arange(len(nll))
    return {
        "n": len(nll), "folds": folds,
        "router": float(nll[rows, choice].mean()),
        "fixed_out_of_fold": float(nll[rows, fixed].mean()),
        "router_minus_fixed": mean_ci((nll[rows, choice] - nll[rows, fixed]).tolist()),
        "choice_counts": {f"{w:g}": int((choice == i).sum()) for i, w in enumerate(grid)},
    }
