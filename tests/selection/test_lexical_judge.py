"""The lexical judge that selects like the paper: the train keep/discard labels mapped from the paper's
discard list onto our train samples, the calibration (pure), and the judge end to end on a small slice
(fit, score through the real runner and SQLite store, `select split` applying its discard decision,
`select report` printing the overlap with the paper's discard list)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from empathy.cli import main as empathy_main
from empathy.errors import DataError
from empathy.settings import Settings, get_settings
from selection.corpus import load_corpus
from selection.distill.artifact import artifact_dir, read_meta
from selection.distill.calibrate import (
    calibrate,
    decide_buckets,
    discard_pr,
    f1_threshold,
    fraction_threshold,
    rationality_shift,
)
from selection.distill.discard_labels import discard_labels, load_discard_labels, read_discard_items
from selection.distill.fit_lexical import LexicalOptions, fit_lexical, heldout_mask
from selection.distill.service import load_labels
from selection.distill.sources import LabelSet
from selection.rule import Thresholds, bucket, decision_raw, discard_decision
from selection.sample import Sample

NAME = "lex"
TRAIN_SLICE = 3000


@pytest.fixture(scope="module")
def discard_path(paper_scores_path: Path) -> Path:
    return paper_scores_path.parent / "train_discard.json"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, discard_path: Path) -> Settings:
    return get_settings(data_dir=tmp_path_factory.mktemp("lexical"), corpus_path=corpus_dir,
                        distill_name=NAME, distill_discard_path=discard_path)


@pytest.fixture(scope="module")
def train(settings: Settings) -> list[Sample]:
    return load_corpus(settings, "train").samples


@pytest.fixture(scope="module")
def labels(train: list[Sample], discard_path: Path) -> np.ndarray:
    return load_discard_labels(discard_path, train)


def test_discard_list_maps_onto_train_listener_turns_by_index(train: list[Sample], labels: np.ndarray,
                                                             discard_path: Path) -> None:
    items = read_discard_items(discard_path)
    assert len(train) == 40254 and len(items) == 3201
    assert int(labels.sum()) == 3201 and abs(labels.mean() - 0.0795) < 0.001
    index, reply = items[0]
    assert labels[index] and reply.split()[0] in train[index].response.lower()


def test_a_shifted_discard_list_is_rejected(train: list[Sample], discard_path: Path) -> None:
    shifted = [(index + 1, reply) for index, reply in read_discard_items(discard_path)]
    with pytest.raises(DataError, match="do not match"):
        discard_labels(shifted, train)


def test_thresholds_calibrate_to_f1_or_fraction() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1, 0.05])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    assert f1_threshold(p, y) == 0.4  # top 4: 3 hits -> F1 6/7, better than top 2 (0.8)
    assert fraction_threshold(p, 0.25) == 0.8 and np.mean(p >= 0.8) == 0.25
    assert calibrate(p, y, "fraction") == fraction_threshold(p, 3 / 8)
    pr = discard_pr(p >= 0.4, y.astype(bool))
    assert pr["discard_precision"] == 0.75 and pr["discard_recall"] == 1.0


def test_rationality_shift_gives_the_paper_s_share_above_the_threshold() -> None:
    r = np.linspace(3.0, 6.0, 101)  # shrunk predictions: only a sixth is above 5
    shift = rationality_shift(r, 0.33)
    assert abs(np.mean(r + shift > 5.0) - 0.33) < 0.02
    assert rationality_shift(r, 0.0) == 0.0 and rationality_shift(np.array([]), 0.3) == 0.0


def test_a_judge_decision_overrides_the_rule_s_discard() -> None:
    s, r = np.array([8.0, 3.0, 4.0, 9.0]), np.array([3.0, 7.0, 4.0, 9.0])
    decided = decide_buckets(s, r, np.array([False, False, False, True]))
    assert decided.tolist() == ["sensibility", "rationality", "sensibility", "discard"]
    assert bucket(4.0, 4.0) == "discard" and bucket(4.0, 4.0, Thresholds(), discard=False) == "sensibility"
    assert bucket(9.0, 3.0, Thresholds(), discard=True) == "discard"
    assert discard_decision(decision_raw(0.7, 0.5)) is True
    assert discard_decision(decision_raw(0.2, 0.5)) is False
    assert discard_decision("") is None and discard_decision("Rationality: 8") is None


def test_heldout_mask_keeps_conversations_whole() -> None:
    convs = [f"c{i // 3}" for i in range(3000)]
    held = heldout_mask(convs, 0.2, 0)
    assert 0.15 < held.mean() < 0.25
    assert all(len(set(held[i:i + 3])) == 1 for i in range(0, 3000, 3))


@pytest.fixture(scope="module")
def fitted(settings: Settings, train: list[Sample], labels: np.ndarray, paper_scores_path: Path) -> Path:
    valid = load_labels(settings, "valid", paper_scores_path, "efficient-empathy")
    small = LabelSet(valid.pairs[:800], valid.source)
    folder = artifact_dir(settings.data_dir, NAME)
    fit_lexical(small, train[:TRAIN_SLICE], labels[:TRAIN_SLICE], "slice", LexicalOptions(), folder)
    return folder


def test_fit_measures_selection_on_held_out_conversations(fitted: Path) -> None:
    meta = read_meta(fitted)
    assert meta.config["kind"] == "lexical" and meta.version.startswith("v1-lexical-")
    assert set(meta.metrics) == {"distilled", "train_discard_heldout"}
    valid = meta.metrics["distilled"]
    wanted = {"spearman_s", "spearman_r", "bucket_macro_f1", "discard_precision", "discard_recall"}
    assert wanted <= set(valid)
    assert np.array(meta.extra["confusion"]).sum() == meta.extra["valid_heldout"]
    assert 0.0 < meta.extra["threshold"] < 1.0


def test_score_split_and_report_apply_the_discard_decision(
        fitted: Path, settings: Settings, discard_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--corpus", str(settings.corpus_path), "--data-dir", str(settings.data_dir)]
    judge = ["--judge", f"distilled:{NAME}"]
    assert empathy_main(["select", "score", "--split", "train", *judge, "--limit", "400", "--no-progress",
                         *common]) == 0
    out = settings.data_dir / "subsets"
    assert empathy_main(["select", "split", "--split", "train", *judge, "--out", str(out), *common]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["full"] == 400 and manifest["counts"]["discard"] > 0
    rows = [json.loads(line) for line in (out / "discard.jsonl").read_text().splitlines()]
    # the judge's decision, not the S/R rule, discarded them: some have scores the rule would keep
    assert any(r["rationality"] > 5.0 or (r["sensibility"] > 5.0 and r["rationality"] < 5.0) for r in rows)
    capsys.readouterr()
    assert empathy_main(["select", "report", "--split", "train", *judge, "--json", "--discard-list",
                         str(discard_path), "--out", str(settings.data_dir / "report"), *common]) == 0
    overlap = json.loads(capsys.readouterr().out)["paper_discard_overlap"]
    assert overlap["scored"] == 400 and overlap["ours"] == manifest["counts"]["discard"]
    assert 0 < overlap["paper"] < 400 and 0 <= overlap["both"] <= overlap["ours"]
