"""Router maths on synthetic data, and the artifact round trip through `empathy.router.Router`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from empathy.errors import ModelError
from empathy.router import Router, featurize, save_artifact
from training.router.cache import load_cache, save_cache
from training.router.fit import (
    choose_l2,
    fit_softmax_regression,
    holdout_mask,
    routing_metrics,
    soft_targets,
    softmax_head,
)
from training.router.train import fit_router

GRID = [0.0, 0.5, 1.0]


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature 0 decides which blend fits: NLL grows with the distance of the weight to sigmoid(3 * x0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    best = 1 / (1 + np.exp(-3 * x[:, 0]))
    nll = 2.0 + 2.0 * np.abs(np.array(GRID)[None, :] - best[:, None]) + 0.05 * rng.normal(size=(n, 3))
    return x, nll


def test_soft_targets_prefer_low_nll() -> None:
    t = soft_targets(np.array([[1.0, 2.0, 3.0]]))
    assert t.sum() == pytest.approx(1.0)
    assert t[0, 0] > t[0, 1] > t[0, 2]
    assert soft_targets(np.array([[1.0, 2.0]]), temperature=0.01)[0, 0] == pytest.approx(1.0)


def test_holdout_keeps_conversations_together() -> None:
    convs = [f"c{i // 3}" for i in range(300)]
    mask = holdout_mask(convs, 0.2)
    for start in range(0, 300, 3):
        assert len(set(mask[start:start + 3])) == 1
    assert 0.1 < mask.mean() < 0.3


def test_fit_recovers_mapping_and_beats_fixed_blends() -> None:
    x, nll = synthetic(600, seed=0)
    weights = fit_softmax_regression(x, soft_targets(nll, temperature=0.1))
    x_test, nll_test = synthetic(300, seed=1)
    metrics = routing_metrics(weights.probs(x_test), nll_test, GRID)
    assert metrics["router_argmax"] < min(metrics["fixed"].values()) - 0.2
    assert metrics["router_argmax"] - metrics["oracle"] < 0.15
    diff = metrics["router_minus_best_fixed"]  # paired interval, all below zero when the router wins
    assert diff["n"] == 300 and diff["high"] < 0
    assert diff["mean"] == pytest.approx(metrics["router_argmax"] - min(metrics["fixed"].values()))
    # the learned direction is feature 0: more x0 -> more weight on the sensibility end of the grid
    assert weights.W[0, 2] - weights.W[0, 0] > 5 * np.abs(weights.W[1:, 2] - weights.W[1:, 0]).max()


def test_fit_router_reports_heldout_metrics() -> None:
    x, nll = synthetic(200, seed=2)
    convs = [f"c{i // 2}" for i in range(200)]
    _, metrics = fit_router(x, nll, convs, GRID, softmax_head(temperature=0.1, l2=1e-2), holdout=0.25)
    held, mask = metrics["heldout"], holdout_mask(convs, 0.25)
    # The held-out numbers are those of the held-out rows (recomputed here from the NLL table)...
    assert held["n"] == int(mask.sum()) > 0
    assert held["fixed"] == pytest.approx({f"{w:g}": float(nll[mask, j].mean()) for j, w in enumerate(GRID)})
    assert held["oracle"] == pytest.approx(float(nll[mask].min(axis=1).mean()))
    # ...and the router learned the signal: far better than any fixed blend, near the oracle.
    assert held["router_argmax"] < min(held["fixed"].values()) - 0.2
    assert held["router_argmax"] - held["oracle"] < 0.3
    # Cross-fitted: every sample routed by a fit without its conversation, against the other folds' best
    # fixed blend (recomputed here).
    cross = metrics["crossfit"]
    assert cross["n"] == 200 and sum(cross["choice_counts"].values()) == 200
    assert cross["router_minus_fixed"]["high"] < -0.2
    assert cross["router"] - cross["fixed_out_of_fold"] == pytest.approx(cross["router_minus_fixed"]["mean"])


def test_cross_validated_l2_routes_on_signal() -> None:
    x, nll = synthetic(400, seed=3)
    convs = [f"c{i // 2}" for i in range(400)]
    l2, scores = choose_l2(x, nll, soft_targets(nll, 0.1), convs)
    assert l2 <= 1.0
    assert scores[f"{l2:g}"] < scores["10000"] - 0.2


def test_cross_validated_l2_falls_back_to_best_fixed_blend_on_noise() -> None:
    """Context features unrelated to the NLLs: the router must not do worse than the best fixed blend."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 20))
    nll = 3.0 + np.array([0.04, 0.02, 0.0])[None, :] + 0.05 * rng.normal(size=(300, 3))
    convs = [f"c{i}" for i in range(300)]
    _, metrics = fit_router(x, nll, convs, GRID, softmax_head(temperature=1.0, l2=None), holdout=0.3)
    held = metrics["heldout"]
    assert metrics["crossfit"]["choice_counts"]["1"] >= 0.95 * 300
    assert held["choice_counts"]["1"] == held["n"]
    assert held["router_argmax"] == pytest.approx(held["fixed"]["1"])


def test_nll_cache_round_trip_and_grid_change(tmp_path: Path) -> None:
    names = ["blend-0-aaaa", "blend-1-aaaa"]
    save_cache(tmp_path, names, {"s1": np.array([1.0, 2.0]), "s2": np.array([3.0, 4.0])})
    rows = load_cache(tmp_path, names)
    assert set(rows) == {"s1", "s2"} and rows["s2"].tolist() == [3.0, 4.0]
    assert load_cache(tmp_path, ["blend-0-bbbb", "blend-1-bbbb"]) == {}


@pytest.fixture(scope="module")
def router_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Router]:
    """A router fitted on real features of a few conversations, saved and loaded back."""
    from empathy.router import ContextEncoder

    encoder = ContextEncoder()
    convs = [[{"role": "user", "content": text}] for text in
             ["I failed my exam and I feel awful.", "My cat died, I am so sad.",
              "How do I fix my bike chain?", "Which train goes to Boston?",
              "I'm scared of the dentist tomorrow.", "What is a good budget app?"]]
    x = featurize(encoder, convs)
    nll = np.array([[3, 2, 1], [3, 2, 1], [1, 2, 3], [1, 2, 3], [3, 2, 1], [1, 2, 3]], dtype=float)
    weights = fit_softmax_regression(x, soft_targets(nll), l2=1e-3)
    folder = save_artifact(tmp_path_factory.mktemp("router"), GRID, weights, {"metrics": {}})
    return folder, Router.load(folder, encoder=encoder)


def test_router_round_trip(router_artifact: tuple[Path, Router]) -> None:
    _, router = router_artifact
    assert router.grid == GRID
    probs = router.predict([{"role": "user", "content": "My grandmother passed away, I miss her."},
                            {"role": "assistant", "content": "(the reply is not seen by the router)"}])
    assert len(probs) == 3 and sum(probs) == pytest.approx(1.0)
    assert router.choose([{"role": "user", "content": "My dog died and I feel so sad."}]) == 1.0
    assert router.choose([{"role": "user", "content": "Which bus goes to the airport?"}]) == 0.0


def test_router_rejects_bad_artifacts(router_artifact: tuple[Path, Router], tmp_path: Path) -> None:
    folder, router = router_artifact
    with pytest.raises(ModelError, match="does not match the blends"):
        router.check_blends([0.0, 0.25, 0.5, 0.75, 1.0])
    router.check_blends([1.0, 0.5, 0.0])
    with pytest.raises(ModelError, match="no router artifact"):
        Router.load(tmp_path, encoder=router.encoder)
    meta = json.loads((folder / "router.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "router.npz").write_bytes((folder / "router.npz").read_bytes())
    (bad / "router.json").write_text(json.dumps({**meta, "grid": []}))
    with pytest.raises(ModelError, match="grid is empty"):
        Router.load(bad, encoder=router.encoder)
    (bad / "router.json").write_text(json.dumps({**meta, "grid": [0.0, 1.0]}))
    with pytest.raises(ModelError, match="3 outputs but the grid has 2"):
        Router.load(bad, encoder=router.encoder)
