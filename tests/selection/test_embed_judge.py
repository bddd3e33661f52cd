"""The embedding judge (`distilled:paper-embed`, kind `embed`): the stacked judge with the reply's MiniLM
embedding as a second first stage. Quick: its options and the stacked judge's config (a fitted paper-stacked
stays current), the alpha choice. Slow (loads MiniLM from the local package): fitted on small slices of the
real data, scored through the real runner and SQLite store, reused by the default-judge check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from empathy.cli import main as empathy_main
from empathy.settings import Settings, get_settings
from selection.corpus import load_corpus
from selection.distill.artifact import read_meta
from selection.distill.embed import EmbedBlock, EmbedModel, choose_alpha, reply_embeddings
from selection.distill.fit_stacked import StackedOptions
from selection.distill.service import ensure_default_judge, stacked_options
from selection.distill.stacked import DISCARD
from selection.sample import Sample
from tests.selection.judge_slices import fit_on_slices, slice_settings

BASE, NAME = "lex-base", "emb"
TRAIN_SLICE, VALID_SLICE = 600, 300


def test_the_stacked_config_is_unchanged_and_embed_only_changes_the_kind() -> None:
    stacked = StackedOptions().config()
    assert stacked == {"kind": "stacked", "base": "paper-lexical", "holdout": 0.2, "seed": 0, "folds": 5,
                       "stack_alpha": 1.0, "min_precision": 0.42, "min_recall": 0.6}
    embed = stacked_options(get_settings(), "embed").config()
    assert embed == {**stacked, "kind": "embed"}


def test_alpha_choice_keeps_a_sparse_signal_that_heavy_shrinkage_loses() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 50))
    groups = np.repeat(np.arange(80), 5)
    y = np.column_stack([x[:, 0] + 0.01 * rng.normal(size=400), x[:, 1] - x[:, 2]])
    assert choose_alpha(x, y, groups, folds=5, alphas=(1e5, 0.01, 1e7)) == 0.01


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, paper_scores_path: Path) -> Settings:
    return slice_settings(tmp_path_factory.mktemp("embed"), corpus_dir, paper_scores_path, NAME, BASE,
                          "embed")


@pytest.fixture(scope="module")
def train(settings: Settings) -> list[Sample]:
    return load_corpus(settings, "train").samples[:TRAIN_SLICE]


@pytest.fixture(scope="module")
def fitted(settings: Settings, train: list[Sample], paper_scores_path: Path) -> Path:
    return fit_on_slices(settings, train, paper_scores_path, VALID_SLICE, stacked_options(settings, "embed"),
                         EmbedBlock())


@pytest.mark.slow
def test_fit_saves_an_embed_judge_measured_on_held_out_conversations(fitted: Path) -> None:
    meta = read_meta(fitted)
    assert meta.config["kind"] == "embed" and meta.version.startswith("v1-embed-")
    assert {"spearman_s", "spearman_r", "bucket_macro_f1"} <= set(meta.metrics["distilled"])
    assert np.array(meta.extra["confusion"]).sum() == meta.extra["valid_heldout"]
    model = EmbedModel.load(fitted)
    assert model.embed_head.coef_.shape == (2, 384)
    # the second stage reads both first stages: (S, R) lexical, (S, R) embedding, logit, 4 lengths
    assert model.stacker.coef_.shape == (2, 2 + 2 + 1 + 4)


@pytest.mark.slow
def test_predictions_carry_the_rule_s_decision(fitted: Path, train: list[Sample]) -> None:
    from selection.distill.lexical import lexical_input

    model = EmbedModel.load(fitted)
    rows = [lexical_input(s) for s in train[:120]]
    out = model.predict(rows)
    sr, p = model.raw_scores(rows)
    assert out.shape == (120, 4) and np.array_equal(out[:, 3] == 1.0,
                                                    model.rule.codes(sr[:, 0], sr[:, 1], p) == DISCARD)
    # one reply scores the same alone as in a batch (the encoder sorts and pads by length)
    assert np.allclose(model.raw_scores(rows[5:6])[0], sr[5:6], atol=1e-4)
    assert reply_embeddings([]).shape == (0, 384) and model.predict([]).shape == (0, 4)


@pytest.mark.slow
def test_scored_by_name_and_the_default_reuses_it(fitted: Path, settings: Settings) -> None:
    common = ["--corpus", str(settings.corpus_path), "--data-dir", str(settings.data_dir)]
    assert empathy_main(["select", "score", "--split", "train", "--judge", f"distilled:{NAME}",
                         "--limit", "100", "--no-progress", *common]) == 0
    version = read_meta(fitted).version
    assert ensure_default_judge(settings) == f"distilled:{NAME}"
    assert read_meta(fitted).version == version
