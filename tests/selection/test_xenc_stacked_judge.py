"""The xenc-stacked judge (kind `xenc-stacked`, `distilled:paper-xenc-stacked`) on a 2-layer random BERT
and small slices of the real data: the out-of-fold plans, a fit over a lexical base and a fine-tuned
cross-encoder (2 out-of-fold fine-tunes, cached), scoring by name through the judge registry, and the
refusal to run over another cross-encoder than it was fitted on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from empathy.errors import ModelError
from empathy.settings import Settings, get_settings
from selection.corpus import load_corpus
from selection.distill.artifact import META_FILE, artifact_dir, read_meta
from selection.distill.discard_labels import load_discard_labels
from selection.distill.finetune import FinetuneModel, FinetuneOptions
from selection.distill.fit_finetune import fit_finetune, valid_parts
from selection.distill.fit_lexical import LexicalOptions, fit_lexical
from selection.distill.fit_stacked import StackedOptions
from selection.distill.fit_xenc_stacked import XencStackedOptions, fit_xenc_stacked, xenc_fit_features
from selection.distill.lexical import dense_features, lexical_input
from selection.distill.service import load_labels, xenc_stacked_options
from selection.distill.sources import LabelSet
from selection.distill.xenc_oof import OOF_DIR, fold_plans
from selection.distill.xenc_stack import XencStackedModel
from selection.sample import Sample
from tests.selection.judge_slices import judge_matches_model, save_tiny_bert

BASE, XENC, NAME = "lex-base", "xenc-tiny", "xstk"
VALID_SLICE = 150
XENC_OPTS = FinetuneOptions(epochs=1, batch_size=8, max_len=64, max_response_tokens=32)
OPTS = XencStackedOptions(base=BASE, xenc=XENC, oof_folds=2, oof_epochs=1)
Rows = tuple[LabelSet, list[Sample], np.ndarray]


def test_options_add_the_cross_encoder_and_leave_the_stacked_config_unchanged() -> None:
    stacked = StackedOptions().config()
    assert stacked["kind"] == "stacked" and "xenc" not in stacked
    assert xenc_stacked_options(get_settings()).config() == {
        **stacked, "kind": "xenc-stacked", "xenc": "paper-xenc", "embed": False, "oof_folds": 3,
        "oof_epochs": 2}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Settings:
    return get_settings(data_dir=tmp_path_factory.mktemp("xenc-stacked"), corpus_path=corpus_dir)


@pytest.fixture(scope="module")
def rows(settings: Settings, paper_scores_path: Path) -> Rows:
    """150 valid labels and 120 train samples (40 discards, 80 keeps of the first 2,000)."""
    valid = load_labels(settings, "valid", paper_scores_path, "efficient-empathy")
    train = load_corpus(settings, "train").samples
    labels = load_discard_labels(paper_scores_path.parent / "train_discard.json", train)
    pick = np.flatnonzero(labels[:2000])[:40].tolist() + np.flatnonzero(~labels[:2000])[:80].tolist()
    return LabelSet(valid.pairs[:VALID_SLICE], valid.source), [train[i] for i in pick], labels[pick]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def fitted(settings: Settings, rows: Rows, encoder: Path) -> Path:
    labels, train, discard = rows
    base = artifact_dir(settings.data_dir, BASE)
    fit_lexical(labels, train, discard, "slice", LexicalOptions(), base)
    fit_finetune(labels, train, discard, XENC_OPTS, artifact_dir(settings.data_dir, XENC), encoder)
    folder = artifact_dir(settings.data_dir, NAME)
    fit_xenc_stacked(labels, train, discard, base, OPTS, folder, encoder)
    return folder


def test_out_of_fold_plans_predict_each_fine_tuning_pair_once_from_other_conversations(rows: Rows) -> None:
    labels = rows[0]
    tune, cal, held = valid_parts(labels, XENC_OPTS)
    plans = fold_plans(labels, XENC_OPTS, 2)
    assert sorted(i for p in plans for i in p.pred) == sorted(tune)
    for plan in plans:
        assert set(cal) <= set(plan.fit) and not set(plan.fit) & set(held)
        assert sorted(plan.fit) == sorted(set(tune) - set(plan.pred) | set(cal))
        convs = {labels.pairs[i].conv for i in plan.fit}
        assert not convs & {labels.pairs[i].conv for i in plan.pred}


def test_fit_saves_a_measured_judge_and_caches_its_fold_predictions(
        fitted: Path, settings: Settings, rows: Rows, encoder: Path) -> None:
    meta = read_meta(fitted)
    assert meta.config == OPTS.config() and meta.version.startswith("v1-xenc-stacked-")
    assert {"spearman_s", "spearman_r", "bucket_macro_f1", "discard_recall"} <= set(meta.metrics["distilled"])
    assert "discard_precision" in meta.metrics["train_discard_heldout"]
    assert np.array(meta.extra["confusion"]).sum() == meta.extra["valid_heldout"]
    cached = sorted(p.name for p in (fitted / OOF_DIR).iterdir())
    assert cached == ["fold0-of-2.npz", "fold1-of-2.npz"]  # checkpoints removed
    model = XencStackedModel.load(fitted)
    assert model.xenc_version == read_meta(artifact_dir(settings.data_dir, XENC)).version
    lengths = dense_features([lexical_input(rows[1][0])]).shape[1]
    assert model.stacker.coef_.shape[1] == 2 + 3 + 1 + lengths  # lexical S/R, xenc S/R/logit, discard logit
    stamps = [p.stat().st_mtime_ns for p in sorted((fitted / OOF_DIR).iterdir())]
    again = xenc_fit_features(*rows, model.xenc, OPTS, fitted, encoder)
    assert [p.stat().st_mtime_ns for p in sorted((fitted / OOF_DIR).iterdir())] == stamps
    assert again.shape[1] == 3 and np.isfinite(again).all()


def test_the_judge_scores_by_name_with_its_rule(fitted: Path, settings: Settings, rows: Rows) -> None:
    judge_matches_model(settings, fitted, XencStackedModel.load(fitted), rows[1][:20])


def test_a_refitted_cross_encoder_asks_for_a_refit(fitted: Path, settings: Settings, tmp_path: Path) -> None:
    for name in (NAME, XENC):
        shutil.copytree(artifact_dir(settings.data_dir, name), tmp_path / name)
    meta_path = tmp_path / XENC / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta_path.write_text(json.dumps({**meta, "version": "v1-finetune-other"}), encoding="utf-8")
    with pytest.raises(ModelError, match="--kind xenc-stacked"):
        XencStackedModel.load(tmp_path / NAME)
    assert isinstance(XencStackedModel.load(fitted).xenc, FinetuneModel)
