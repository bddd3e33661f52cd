"""The router's reply-kind stage on synthetic data: the ridge recovers what the context says about the reply,
the two stages collapse to one softmax regression exactly, and the stage never learns from the router's own
conversations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selection.sample import Message, Sample
from training.router.cache import load_cache, save_cache
from training.router.fit import fit_softmax_regression, fold_of, routing_metrics, soft_targets
from training.router.kind import choose_alpha, collapse, fit_kind, fit_nll_head, spearman
from training.router.kind_data import kind_samples

GRID = [0.0, 0.5, 1.0]


def world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contexts x (20 features); the judge's (S, R) of the gold reply depend on x0 (S) and x1 (R); the
    rationality-heavy blend (weight 0) explains high-R replies best, as on the real data."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20)) * rng.uniform(0.5, 5.0, size=20)
    scores = np.stack([6 + 1.5 * x[:, 0] / x[:, 0].std(), 4 + 2.0 * x[:, 1] / x[:, 1].std()], 1)
    scores += rng.normal(scale=1.0, size=scores.shape)
    best = 1 / (1 + np.exp(scores[:, 1] - 4))  # high R -> weight near 0
    nll = 3.0 + 0.3 * np.abs(np.array(GRID)[None, :] - best[:, None]) + 0.2 * rng.normal(size=(n, 3))
    return x, scores, nll


def test_ridge_recovers_the_scores_the_context_predicts() -> None:
    x, scores, _ = world(4000, 0)
    kind = fit_kind(x[:3000], scores[:3000], alpha=10.0)
    pred = kind.predict(x[3000:])
    assert spearman(pred[:, 0], scores[3000:, 0]) > 0.7 and spearman(pred[:, 1], scores[3000:, 1]) > 0.7
    # The S column is not driven by x1 and vice versa.
    assert abs(kind.A[1, 0]) < 0.1 * abs(kind.A[0, 0]) and abs(kind.A[0, 1]) < 0.1 * abs(kind.A[1, 1])


def test_alpha_is_chosen_by_cross_validation_among_the_candidates() -> None:
    x, scores, _ = world(600, 1)
    folds = fold_of([f"c{i}" for i in range(600)], 3)
    alpha, cv = choose_alpha(x, scores, folds, candidates=(1.0, 1e6))
    assert alpha == 1.0 and cv["1"] > cv["1e+06"]


def test_the_nll_head_fits_a_line_per_blend_and_routes_to_the_lowest_predicted_nll() -> None:
    rng = np.random.default_rng(5)
    r = rng.normal(4, 2, size=(3000, 1))
    slopes, intercepts = np.array([-0.02, 0.0, 0.03]), np.array([3.1, 3.0, 2.9])
    nll = intercepts + r * slopes + 0.05 * rng.normal(size=(3000, 3))
    head = fit_nll_head(r, nll, tau=15.0)
    np.testing.assert_allclose(head.W[0] / -15.0, slopes, atol=3e-3)
    np.testing.assert_allclose(head.b / -15.0, intercepts, atol=2e-2)
    grid_r = np.array([[0.0], [4.0], [9.0]])
    predicted = intercepts + grid_r * slopes
    assert head.probs(grid_r).argmax(1).tolist() == predicted.argmin(1).tolist()
    with pytest.raises(ValueError, match="tau"):
        fit_nll_head(r, nll, tau=0)


def test_the_two_stages_collapse_to_one_softmax_regression() -> None:
    x, scores, nll = world(1500, 2)
    kind = fit_kind(x[:1000], scores[:1000, 1:], alpha=10.0)
    for head in (fit_nll_head(kind.predict(x[1000:]), nll[1000:], tau=15.0),
                 fit_softmax_regression(kind.predict(x[1000:]), soft_targets(nll[1000:], 0.1), l2=1e-2)):
        one = collapse(kind, head)
        assert one.W.shape == (20, len(GRID)) and one.mean.shape == (20,)
        np.testing.assert_allclose(one.probs(x[1000:]), head.probs(kind.predict(x[1000:])), atol=1e-5)


def test_routing_on_the_predicted_kind_beats_the_best_fixed_blend() -> None:
    """Few NLL rows, many scored replies: the line per blend on the predicted R routes well."""
    x, scores, nll = world(6000, 3)
    kind = fit_kind(x[:5000], scores[:5000, 1:], alpha=10.0)
    inputs = kind.predict(x[5000:])
    head = fit_nll_head(inputs[:600], nll[5000:5600], tau=15.0)
    metrics = routing_metrics(head.probs(inputs[600:]), nll[5600:], GRID)
    assert metrics["router_minus_best_fixed"]["high"] < 0


def sample(sid: str, conv: str) -> Sample:
    return Sample(id=sid, split="train", conv_id=conv, turn=1, context=(Message("user", "hi"),),
                  response="ok")


def test_kind_samples_skip_the_router_conversations_and_unscored_ones() -> None:
    samples = [sample(f"s{i}", f"c{i // 2}") for i in range(40)]
    scores = {f"s{i}": float(i) for i in range(40) if i != 5}
    pool, targets = kind_samples(samples, scores, router_convs={"c0", "c1"}, limit=None)
    ids = {s.id for s in pool}
    assert not ids & {"s0", "s1", "s2", "s3", "s5"} and len(pool) == 35
    assert targets.shape == (35, 1) and targets[:, 0].tolist() == [float(s.id[1:]) for s in pool]
    assert len(kind_samples(samples, scores, set(), limit=7)[0]) == 7


def test_the_feature_cache_keeps_float32_rows_by_key(tmp_path: Path) -> None:
    rows = {"a": np.arange(4, dtype=np.float32), "b": np.ones(4, dtype=np.float32)}
    save_cache(tmp_path, ["enc", "f1"], rows, "features.npz", dtype=np.float32)
    back = load_cache(tmp_path, ["enc", "f1"], "features.npz")
    assert set(back) == {"a", "b"} and back["a"].dtype == np.float32 and back["a"].tolist() == [0, 1, 2, 3]
    assert load_cache(tmp_path, ["other"], "features.npz") == {}
