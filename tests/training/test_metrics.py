"""The paper's metrics on inputs small enough to compute by hand."""

from __future__ import annotations

import math

import pytest

from training.evaluation.metrics import all_metrics, corpus_bleu_n, distinct_n, rouge_f, tokenize, unigram_f1


def test_tokenize_lowercases_and_splits_punctuation() -> None:
    assert tokenize("Hi, I'm FINE!") == ["hi", ",", "i'm", "fine", "!"]


def test_distinct_n_counts_over_all_outputs() -> None:
    outputs = [["a", "b", "a"], ["a", "c"]]
    assert distinct_n(outputs, 1) == pytest.approx(3 / 5)
    assert distinct_n(outputs, 2) == pytest.approx(3 / 3)
    assert distinct_n([["a"]], 2) == 0.0


def test_unigram_f1() -> None:
    # overlap 2: precision 2/3, recall 2/4 -> F1 = 4/7
    assert unigram_f1(["a", "b", "c"], ["a", "b", "d", "e"]) == pytest.approx(4 / 7)
    assert unigram_f1(["x"], ["y"]) == 0.0
    assert unigram_f1([], []) == 1.0


def test_corpus_bleu_by_hand() -> None:
    scores = corpus_bleu_n([["the", "cat", "ran"]], [["the", "cat", "sat"]])
    assert scores["bleu1"] == pytest.approx(2 / 3)
    assert scores["bleu2"] == pytest.approx(math.sqrt(2 / 3 * 1 / 2))
    # no trigram matches: method1 smoothing counts 0.1 matches instead of 0
    assert scores["bleu3"] == pytest.approx((2 / 3 * 1 / 2 * 0.1) ** (1 / 3))


def test_corpus_bleu_brevity_penalty() -> None:
    scores = corpus_bleu_n([["the", "cat", "sat"]], [["the", "cat", "sat", "down"]], max_n=1)
    assert scores["bleu1"] == pytest.approx(math.exp(1 - 4 / 3))


def test_rouge_by_hand() -> None:
    scores = rouge_f(["the cat sat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert scores["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4)
    assert scores["rougeL"] == pytest.approx(2 / 3)


def test_all_metrics_identical_outputs_score_one() -> None:
    refs = ["i am so sorry to hear that , how are you holding up ?", "that is great news !"]
    scores = all_metrics(refs, refs)
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "f1"):
        assert scores[key] == pytest.approx(1.0), key
    assert scores["avg_len"] == pytest.approx((14 + 5) / 2)


def test_all_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        all_metrics(["a"], [])
    with pytest.raises(ValueError):
        all_metrics([], [])
