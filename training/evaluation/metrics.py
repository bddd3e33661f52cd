"""The paper's automatic metrics, as pure functions of (hypotheses, references).

Tokenisation: lower-cased words and single punctuation marks (`tokenize`), the same for every metric except
ROUGE, which uses rouge-score's own tokenizer (its standard). BLEU-n is NLTK's cumulative corpus BLEU with
uniform weights over 1..n-grams and smoothing method 1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def corpus_bleu_n(hyps: Sequence[list[str]], refs: Sequence[list[str]], max_n: int = 4) -> dict[str, float]:
    """BLEU-1..max_n (cumulative, uniform weights), one reference per hypothesis, smoothing method 1."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    smooth = SmoothingFunction().method1
    out = {}
    for n in range(1, max_n + 1):
        weights = tuple([1.0 / n] * n)
        out[f"bleu{n}"] = float(corpus_bleu([[r] for r in refs], list(hyps), weights=weights,
                                            smoothing_function=smooth))
    return out


def rouge_f(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over the pairs."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, ref in zip(hyps, refs, strict=True):
        scores = scorer.score(ref, hyp)
        for key in totals:
            totals[key] += scores[key].fmeasure
    return {key: value / max(len(hyps), 1) for key, value in totals.items()}


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(hyps: Sequence[list[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of all outputs (0 when there is no n-gram at all)."""
    grams = [g for tokens in hyps for g in ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def unigram_f1(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """F1 of the multiset overlap of tokens (1.0 when both are empty)."""
    if not hyp and not ref:
        return 1.0
    common = sum((Counter(hyp) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def all_metrics(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Every automatic metric of a run; the inputs are raw reply strings, paired by position."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    if not hyps:
        raise ValueError("no replies to evaluate")
    hyp_tokens = [tokenize(h) for h in hyps]
    ref_tokens = [tokenize(r) for r in refs]
    return {
        **corpus_bleu_n(hyp_tokens, ref_tokens),
        **rouge_f(hyps, refs),
        "dist1": distinct_n(hyp_tokens, 1),
        "dist2": distinct_n(hyp_tokens, 2),
        "f1": sum(unigram_f1(h, r) for h, r in zip(hyp_tokens, ref_tokens, strict=True)) / len(hyps),
        "avg_len": sum(len(h) for h in hyp_tokens) / len(hyps),
    }
