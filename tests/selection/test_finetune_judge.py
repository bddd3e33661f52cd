"""The fine-tuned cross-encoder judge (kind `finetune`, `distilled:paper-xenc`) on a 2-layer random BERT
with MiniLM's tokenizer and a few dozen real rows: the epoch plan, fit + save + load + scoring through the
judge registry, and the resume of an interrupted fit from its checkpoint."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from empathy.settings import Settings, get_settings
from selection.corpus import load_corpus
from selection.distill.artifact import artifact_dir, read_meta
from selection.distill.discard_labels import load_discard_labels
from selection.distill.finetune import FinetuneModel, FinetuneOptions, build_net
from selection.distill.finetune_train import DISCARD_TASK, SR, Checkpoint, TaskData, epoch_plan, fit_net
from selection.distill.fit_finetune import CHECKPOINT_FILE, fit_finetune, valid_parts
from selection.distill.service import load_labels
from selection.distill.sources import LabelSet
from selection.sample import Sample
from tests.selection.judge_slices import judge_matches_model, save_tiny_bert

NAME = "xenc-tiny"
OPTS = FinetuneOptions(epochs=1, batch_size=8, keeps_per_discard=2.0, max_len=64, max_response_tokens=32)


def _seq(n: int) -> list[int]:
    """`[CLS] turn [SEP] reply [SEP]` ids of a turn of `n` tokens."""
    return [101, *[2000] * n, 102, 2001, 2002, 102]


def _plan_data(n_valid: int, discard: list[bool]) -> TaskData:
    return TaskData([_seq(1 + i % 5) for i in range(n_valid)], np.full((n_valid, 2), 5.0),
                    [_seq(1 + i % 7) for i in range(len(discard))], np.array(discard, dtype=bool))


def test_an_epoch_holds_every_valid_pair_every_discard_and_a_sample_of_keeps() -> None:
    discard = [i % 10 == 0 for i in range(200)]  # 20 discards, 180 keeps
    data = _plan_data(50, discard)
    plan = epoch_plan(data, OPTS, 0)
    valid = sorted(i for task, idx in plan if task == SR for i in idx)
    train = [i for task, idx in plan if task == DISCARD_TASK for i in idx]
    assert valid == list(range(50))
    assert len(train) == len(set(train)) == 20 + 40 and sum(discard[i] for i in train) == 20
    assert all(len(idx) <= OPTS.batch_size for _, idx in plan)
    assert plan == epoch_plan(data, OPTS, 0) and plan != epoch_plan(data, OPTS, 1)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT (hidden 32) saved with all-MiniLM-L6-v2's tokenizer."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Settings:
    return get_settings(data_dir=tmp_path_factory.mktemp("finetune"), corpus_path=corpus_dir)


@pytest.fixture(scope="module")
def rows(settings: Settings, paper_scores_path: Path) -> tuple[LabelSet, list[Sample], np.ndarray]:
    """60 valid labels and 120 train samples (all discards among the first 2,000 train samples beside the
    first keeps) with the paper's keep/discard labels."""
    valid = load_labels(settings, "valid", paper_scores_path, "efficient-empathy")
    train = load_corpus(settings, "train").samples
    labels = load_discard_labels(paper_scores_path.parent / "train_discard.json", train)
    pick = np.flatnonzero(labels[:2000])[:40].tolist() + np.flatnonzero(~labels[:2000])[:80].tolist()
    return LabelSet(valid.pairs[:60], valid.source), [train[i] for i in pick], labels[pick]


@pytest.fixture(scope="module")
def fitted(settings: Settings, rows: tuple[LabelSet, list[Sample], np.ndarray], tiny_encoder: Path) -> Path:
    labels, train, discard = rows
    folder = artifact_dir(settings.data_dir, NAME)
    fit_finetune(labels, train, discard, OPTS, folder, tiny_encoder)
    return folder


def test_fit_saves_a_measured_judge_and_removes_its_checkpoint(
        fitted: Path, rows: tuple[LabelSet, list[Sample], np.ndarray]) -> None:
    meta = read_meta(fitted)
    assert meta.config["kind"] == "finetune" and meta.version.startswith("v1-finetune-")
    assert {"spearman_s", "spearman_r", "bucket_macro_f1", "discard_recall"} <= set(meta.metrics["distilled"])
    assert "discard_precision" in meta.metrics["train_discard_heldout"]
    tune, cal, held = valid_parts(rows[0], OPTS)
    assert np.array(meta.extra["confusion"]).sum() == len(held) == meta.extra["valid_heldout"]
    assert not set(tune) & set(cal) and not set(tune) & set(held) and not set(cal) & set(held)
    assert not (fitted / CHECKPOINT_FILE).exists()
    assert meta.extra["readout"] in ("dist", "mse")
    assert FinetuneModel.load(fitted).readout == meta.extra["readout"]


def test_the_loaded_judge_scores_by_name_with_its_rule(
        fitted: Path, settings: Settings, rows: tuple[LabelSet, list[Sample], np.ndarray]) -> None:
    from selection.distill.lexical import lexical_input

    train = rows[1][:20]
    model = FinetuneModel.load(fitted)
    out = judge_matches_model(settings, fitted, model, train)
    # one reply alone scores as in a batch (bf16: padding changes the rounding only)
    assert np.allclose(model.predict([lexical_input(train[3])])[0, :3], out[3, :3], atol=0.05)


def test_the_onnx_runtime_scores_as_torch(fitted: Path, tmp_path: Path,
                                          rows: tuple[LabelSet, list[Sample], np.ndarray]) -> None:
    from selection.distill.lexical import lexical_input

    model = FinetuneModel.load(fitted)
    model.options = replace(model.options, bf16=False)
    inputs = [lexical_input(s) for s in rows[1][:30]]
    torch_scores, torch_p = model.predict_rows(inputs)
    model.use_onnx(tmp_path)
    onnx_scores, onnx_p = model.predict_rows(inputs)
    assert np.allclose(onnx_scores, torch_scores, atol=1e-4) and np.allclose(onnx_p, torch_p, atol=1e-5)


class _Interrupted(Exception):
    pass


class _StopAfter(Checkpoint):
    """Saves after every step and stops the fit after `steps` of them, as a kill would."""

    def __init__(self, path: Path, key: dict[str, Any], steps: int) -> None:
        super().__init__(path, key, every_s=0.0)
        self.steps = steps

    def save(self, state: dict[str, Any], force: bool = False) -> None:
        super().save(state, force)
        self.steps -= 1
        if self.steps <= 0:
            raise _Interrupted


def test_an_interrupted_fit_resumes_from_its_checkpoint(
        tmp_path: Path, tiny_encoder: Path, caplog: pytest.LogCaptureFixture) -> None:
    discard = [i % 4 == 0 for i in range(40)]
    opts = replace(OPTS, epochs=2)
    data = _plan_data(24, discard)
    net, tokenizer = build_net(tiny_encoder)
    key = {"test": 1}
    with pytest.raises(_Interrupted):
        fit_net(net, data, opts, tokenizer.pad_token_id, tokenizer.sep_token_id,
                _StopAfter(tmp_path / "ck.pt", key, steps=len(epoch_plan(data, opts, 0)) + 2))
    with caplog.at_level(logging.INFO, logger="empathy.selection.distill"):
        losses = fit_net(build_net(tiny_encoder)[0], data, opts, tokenizer.pad_token_id,
                         tokenizer.sep_token_id, Checkpoint(tmp_path / "ck.pt", key))
    assert "resuming the fine-tuning at epoch 2, batch 1" in caplog.text
    assert len(losses) == 2 and all(np.isfinite(losses))
    # a checkpoint of other options is not used
    with caplog.at_level(logging.WARNING, logger="empathy.selection.distill"):
        fit_net(build_net(tiny_encoder)[0], data, replace(opts, epochs=1), tokenizer.pad_token_id,
                tokenizer.sep_token_id, Checkpoint(tmp_path / "ck.pt", {"test": 2}))
    assert "ignoring the checkpoint" in caplog.text
