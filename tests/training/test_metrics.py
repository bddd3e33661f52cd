"""The paper's metrics on inputs small enough to compute by hand (its own numbers: the fixture test)."""

from __future__ import annotations

import math
import random

import pytest

from training.evaluation.metrics import (
    all_metrics,
    bleu_counts,
    corpus_bleu_n,
    corpus_f1,
    distinct_n,
    has_loop,
    loop_share,
    normalize_answer,
    rouge_f,
    tokenize,
)


def test_tokenize_is_nltk_word_tokenize_of_lowered_text() -> None:
    assert tokenize("Hi, I'm FINE!") == ["hi", ",", "i", "'m", "fine", "!"]
    assert tokenize("I can't go.") == ["i", "ca", "n't", "go", "."]


def test_tokenize_splits_sentences_with_punkt_first() -> None:
    """Without Punkt, the Treebank tokenizer keeps a period inside a line on its word ("sad.")."""
    from nltk.tokenize import word_tokenize

    text = "I am so sad. Dr. Smith said the U.S. is far away. Really"
    assert "sad." in word_tokenize(text.lower(), preserve_line=True)
    assert tokenize(text) == ["i", "am", "so", "sad", ".", "dr.", "smith", "said", "the", "u.s.", "is", "far",
                              "away", ".", "really"]


def test_normalize_answer_is_the_papers_rouge_tokenizer() -> None:
    assert normalize_answer("The cat's hat, a RED one!") == ["cat", "s", "hat", "red", "one"]
    assert normalize_answer("...") == [""]


def test_distinct_n_adds_the_papers_epsilon() -> None:
    outputs = [["a", "b", "a"], ["a", "c"]]
    assert distinct_n(outputs, 1) == pytest.approx((3 + 1e-5) / (5 + 1e-5), abs=1e-12)
    assert distinct_n(outputs, 2) == pytest.approx(1.0)
    assert distinct_n([["a"]], 2) == pytest.approx(1.0)  # 1e-5 / 1e-5: no bigram at all


def test_corpus_f1_sums_over_the_corpus() -> None:
    # hits 2 + 0, reply tokens 3 + 1, reference tokens 4 + 1: P = 2/4, R = 2/5
    f1 = corpus_f1([["a", "b", "c"], ["x"]], [["a", "b", "d", "e"], ["y"]])
    assert f1 == pytest.approx(2 * 0.5 * 0.4 / 0.9, abs=1e-7)


def test_corpus_bleu_by_hand() -> None:
    scores = corpus_bleu_n([["the", "cat", "ran"]], [["the", "cat", "sat"]])
    assert scores["bleu1"] == pytest.approx(2 / 3)
    assert scores["bleu2"] == pytest.approx(math.sqrt(2 / 3 * 1 / 2))
    # no trigram match: smoothing method 1 with the paper's epsilon counts 1e-12 matches instead of 0
    assert scores["bleu3"] == pytest.approx((2 / 3 * 1 / 2 * 1e-12) ** (1 / 3))


def test_corpus_bleu_brevity_penalty() -> None:
    scores = corpus_bleu_n([["the", "cat", "sat"]], [["the", "cat", "sat", "down"]], max_n=1)
    assert scores["bleu1"] == pytest.approx(math.exp(1 - 4 / 3))


def test_bleu_counts_are_nltks_modified_precision() -> None:
    from nltk.translate.bleu_score import modified_precision

    rng = random.Random(3)
    for _ in range(50):
        hyp = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        ref = [rng.choice("abcde") for _ in range(rng.randint(1, 9))]
        matches, totals = bleu_counts(hyp, ref)
        for n in range(1, 5):
            p = modified_precision([ref], hyp, n)
            assert (matches[n - 1], totals[n - 1]) == (p.numerator, p.denominator)


def test_rouge_on_normalized_tokens_by_hand() -> None:
    # normalize_answer drops "the" and "." -> reply [cat, sat], reference [cat, sat, on, mat]
    scores = rouge_f([tokenize("The cat sat.")], [tokenize("the cat sat on the mat")])
    assert scores["rouge1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert scores["rouge2"] == pytest.approx(2 * 1 * (1 / 3) / (4 / 3))
    assert scores["rougeL"] == pytest.approx(2 / 3)


def test_loops_are_word_4grams_three_times() -> None:
    sorry = "I'm so sorry for your loss. " * 3
    assert has_loop(tokenize(sorry))
    assert not has_loop(tokenize("I'm so sorry for your loss. " * 2))
    assert has_loop(tokenize("a b c d, a b c d! a b c d?"))  # punctuation does not break a word 4-gram
    assert not has_loop(tokenize("yes yes yes"))
    assert loop_share([tokenize(sorry), tokenize("fine"), [], tokenize("ok")]) == 0.25
    assert loop_share([]) == 0.0


def test_all_metrics_identical_outputs_score_one() -> None:
    refs = ["i am so sorry to hear that , how are you holding up ?", "that is great news !"]
    scores = all_metrics(refs, refs)
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "f1"):
        assert scores[key] == pytest.approx(1.0), key
    assert scores["avg_len"] == pytest.approx((14 + 5) / 2)
    assert scores["loop"] == 0.0


def test_all_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        all_metrics(["a"], [])
    with pytest.raises(ValueError):
        all_metrics([], [])
