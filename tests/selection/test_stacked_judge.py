"""The stacked judge: its bucket rule and calibration (pure), and the judge end to end on small slices of the
real data (a lexical base fitted on them, the second stage over it, scored through the real runner and
SQLite store, `select split` applying its decisions, the default judge reusing a fitted base)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from empathy.cli import main as empathy_main
from empathy.settings import Settings
from selection.corpus import load_corpus
from selection.distill.artifact import artifact_dir, read_meta
from selection.distill.fit_stacked import StackedOptions, group_oof
from selection.distill.service import ensure_default_judge
from selection.distill.stacked import (
    DISCARD,
    RATIONALITY,
    SENSIBILITY,
    BucketRule,
    DiscardCheck,
    StackedModel,
    calibrate_rule,
    macro_f1,
    paper_codes,
)
from selection.rule import Thresholds, bucket
from selection.sample import Sample
from tests.selection.judge_slices import fit_on_slices, slice_settings

BASE, NAME = "lex-base", "stk"
TRAIN_SLICE, VALID_SLICE = 2000, 600


def test_the_rule_with_paper_thresholds_is_the_paper_s_rule() -> None:
    s = np.array([8.0, 8.0, 3.0, 8.0, 4.0, 6.0])
    r = np.array([3.0, 7.0, 7.0, 5.0, 3.0, 4.0])
    paper = paper_codes(s, r)
    assert paper.tolist() == [SENSIBILITY, RATIONALITY, RATIONALITY, DISCARD, DISCARD, SENSIBILITY]
    # on integer scores, R <= 4.5 is R < 5: the paper's rule is BucketRule(5, 4.5, 5)
    assert BucketRule(5.0, 4.5, 5.0).codes(s, r, np.zeros(6)).tolist() == paper.tolist()
    assert BucketRule(5.0, 4.5, 5.0, p_max=0.5).codes(s, r, np.full(6, 0.6)).tolist() == [DISCARD] * 6


def test_stored_scores_give_the_rule_s_bucket_to_kept_samples() -> None:
    rng = np.random.default_rng(0)
    s, r = rng.uniform(0, 10, 500), rng.uniform(0, 10, 500)
    rule = BucketRule(s_min=6.3, r_low=4.2, r_high=4.7)
    codes = rule.codes(s, r, np.zeros(500))
    stored = rule.emitted(s, r)
    names = {SENSIBILITY: "sensibility", RATIONALITY: "rationality", DISCARD: "discard"}
    decided = [bucket(a, b, Thresholds(), discard=bool(c == DISCARD)) for (a, b), c in zip(stored, codes,
                                                                                            strict=True)]
    assert decided == [names[int(c)] for c in codes]


def test_macro_f1_is_sklearn_s() -> None:
    rng = np.random.default_rng(1)
    true, pred = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    pred[:50] = 0  # unbalanced
    assert macro_f1(true, pred) == pytest.approx(f1_score(true, pred, average="macro", labels=[0, 1, 2]))
    assert macro_f1(np.zeros(4, int), np.full(4, 1)) == 0.0


def test_calibration_recovers_shifted_thresholds_and_honours_the_discard_check() -> None:
    rng = np.random.default_rng(2)
    s_true, r_true = rng.integers(0, 11, 3000).astype(float), rng.integers(0, 11, 3000).astype(float)
    true = paper_codes(s_true, r_true)
    s_pred, r_pred = s_true * 0.5 + 2.0, r_true * 0.4 + 2.0  # shrunk predictions: 5 maps to 4.5 and 4.0
    plain = macro_f1(true, BucketRule().codes(s_pred, r_pred, np.zeros(3000)))
    rule = calibrate_rule(s_pred, r_pred, np.zeros(3000), true)
    assert macro_f1(true, rule.codes(s_pred, r_pred, np.zeros(3000))) > max(0.95, plain + 0.2)
    assert 3.6 <= rule.r_low < 4.0 <= rule.r_high < 4.4 and 4.0 <= rule.s_min < 4.5
    # a train check that needs the discard head: only rules that cut at p >= 0.5 pass it
    p = rng.uniform(0, 1, 1000)
    check = DiscardCheck(np.full(1000, 9.0), np.full(1000, 2.0), p, p > 0.5, 0.9, 0.9)
    assert not check.passes(rule)
    with_head = calibrate_rule(s_pred, r_pred, np.zeros(3000), true, p_grid=[0.3, 0.5, float("inf")],
                               check=check)
    assert with_head.p_max == 0.5 and check.passes(with_head)


def test_out_of_fold_predictions_never_see_their_own_group() -> None:
    from sklearn.linear_model import Ridge

    x = np.arange(40, dtype=float).reshape(-1, 1)
    groups = np.repeat(np.arange(10), 4)
    y = np.column_stack([groups * 100.0, x[:, 0]])  # memorising a group would be exact
    out = group_oof(lambda: Ridge(alpha=1e-6), x, y, groups, folds=5)
    assert out.shape == y.shape and np.abs(out - y).max() > 1.0


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, paper_scores_path: Path) -> Settings:
    return slice_settings(tmp_path_factory.mktemp("stacked"), corpus_dir, paper_scores_path, NAME, BASE,
                          "stacked")


@pytest.fixture(scope="module")
def train(settings: Settings) -> list[Sample]:
    return load_corpus(settings, "train").samples[:TRAIN_SLICE]


@pytest.fixture(scope="module")
def fitted(settings: Settings, train: list[Sample], paper_scores_path: Path) -> Path:
    return fit_on_slices(settings, train, paper_scores_path, VALID_SLICE, StackedOptions(base=BASE))


def test_fit_measures_the_selection_on_held_out_conversations(fitted: Path) -> None:
    meta = read_meta(fitted)
    assert meta.config["kind"] == "stacked" and meta.version.startswith("v1-stacked-")
    assert set(meta.metrics) == {"distilled", "train_discard_heldout"}
    wanted = {"spearman_s", "spearman_r", "bucket_macro_f1", "discard_precision", "discard_recall"}
    assert wanted <= set(meta.metrics["distilled"])
    assert np.array(meta.extra["confusion"]).sum() == meta.extra["valid_heldout"]
    rule = BucketRule(**meta.extra["rule"])
    assert rule.r_low <= rule.r_high
    held = np.load(fitted / "heldout.npz")
    assert held["pred"].shape == held["true"].shape and len(held["codes"]) == meta.extra["valid_heldout"]


def test_predictions_carry_the_rule_s_decision(fitted: Path, train: list[Sample]) -> None:
    from selection.distill.lexical import lexical_input

    model = StackedModel.load(fitted)
    rows = [lexical_input(s) for s in train[:300]]
    out = model.predict(rows)
    sr, p = model.raw_scores(rows)
    assert out.shape == (300, 4) and np.allclose(out[:, 2], p, atol=1e-6)
    assert np.array_equal(out[:, 3] == 1.0, model.rule.codes(sr[:, 0], sr[:, 1], p) == DISCARD)
    assert model.predict([]).shape == (0, 4)


def test_score_and_split_apply_its_decisions_and_the_default_reuses_the_base(
        fitted: Path, settings: Settings) -> None:
    common = ["--corpus", str(settings.corpus_path), "--data-dir", str(settings.data_dir)]
    judge = ["--judge", f"distilled:{NAME}"]
    assert empathy_main(["select", "score", "--split", "train", *judge, "--limit", "300", "--no-progress",
                         *common]) == 0
    out = settings.data_dir / "subsets"
    assert empathy_main(["select", "split", "--split", "train", *judge, "--out", str(out), *common]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["full"] == 300
    assert sum(manifest["counts"][b] for b in ("sensibility", "rationality", "discard")) == 300

    def rows(name: str) -> list[dict]:
        return [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]

    # kept ones split by the stored R (shifted so that R > 5 is the rule's rationality)
    assert all(r["rationality"] <= 5.0 for r in rows("sensibility"))
    assert all(r["rationality"] > 5.0 for r in rows("rationality"))
    base_version = read_meta(artifact_dir(settings.data_dir, BASE)).version
    stacked_version = read_meta(fitted).version
    # the fixture fitted with the settings' options, so the default judge is current: nothing is re-fitted
    assert ensure_default_judge(settings) == f"distilled:{NAME}"
    assert read_meta(artifact_dir(settings.data_dir, BASE)).version == base_version
    assert read_meta(fitted).version == stacked_version
