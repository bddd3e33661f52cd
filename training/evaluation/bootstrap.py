"""95% bootstrap intervals for every cell of the eval table, and paired differences between two models.

Every corpus-level metric is a function of per-sample sums (BLEU's clipped n-gram matches and lengths, F1's
hits and lengths, the per-pair ROUGE values, loop flags, judge scores), so a resample is a weight vector over
the test samples (how often each was drawn) and the metric of 1000 resamples is a few matrix products.
Dist-n is the exception: its distinct-n-gram count is not a sum, and a resample drawn with replacement repeats
replies, whose n-grams are then never new, so every resample's Dist would sit below the estimate. Its interval
therefore comes from half-samples drawn without replacement (whose spread matches the full sample's for
mean-like statistics), centred on the estimate: estimate + percentiles of (half-sample value - their mean).
Paired differences use the same resamples (or half-samples) for both models, aligned by sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.evaluation import metrics as m

SUM_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "f1", "loop", "avg_len",
               "judge_s", "judge_r")
DISTINCT_METRICS = ("dist1", "dist2")
_CHUNK = 200  # resamples per sparse product in Dist-n (bounds memory at vocabulary x 200)


@dataclass(frozen=True)
class RunStats:
    """Per-sample statistics of one run, the inputs of every corpus-level metric."""

    bleu_num: np.ndarray  # (N, 4) clipped n-gram matches, n = 1..4
    bleu_den: np.ndarray  # (N, 4) max(1, reply n-grams)
    hyp_len: np.ndarray  # (N,) reply tokens
    ref_len: np.ndarray  # (N,) reference tokens
    rouge: np.ndarray  # (N, 3) ROUGE-1/2/L F of each pair
    f1: np.ndarray  # (N, 3) unigram hits, reply tokens, reference tokens
    loop: np.ndarray  # (N,) 1.0 where the reply loops
    grams: tuple[Any, ...]  # Dist-1, Dist-2: sparse (N, vocabulary) n-gram counts per reply
    judge: np.ndarray  # (N, 2) judged S and R; nan where there is no verdict

    @property
    def n(self) -> int:
        return len(self.hyp_len)


def _gram_matrix(hyps: Sequence[list[str]], n: int) -> Any:
    from scipy.sparse import csr_matrix

    vocab: dict[tuple[str, ...], int] = {}
    rows, cols = [], []
    for i, tokens in enumerate(hyps):
        for gram in m.ngrams(tokens, n):
            rows.append(i)
            cols.append(vocab.setdefault(gram, len(vocab)))
    data = np.ones(len(rows))
    return csr_matrix((data, (rows, cols)), shape=(len(hyps), max(len(vocab), 1)))


def run_stats(hyps: Sequence[str], refs: Sequence[str],
              judge: Sequence[tuple[float, float] | None] | None = None) -> RunStats:
    """Tokenize once and keep what every metric (and every resample of it) needs."""
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"{len(hyps)} replies for {len(refs)} references: need the same number, at least 1")
    hyp_tokens = [m.tokenize(h) for h in hyps]
    ref_tokens = [m.tokenize(r) for r in refs]
    counts = [m.bleu_counts(h, r) for h, r in zip(hyp_tokens, ref_tokens, strict=True)]
    verdicts = list(judge) if judge is not None else [None] * len(hyps)
    return RunStats(
        bleu_num=np.array([c[0] for c in counts], dtype=float),
        bleu_den=np.array([c[1] for c in counts], dtype=float),
        hyp_len=np.array([len(h) for h in hyp_tokens], dtype=float),
        ref_len=np.array([len(r) for r in ref_tokens], dtype=float),
        rouge=np.array([m.rouge_pair(h, r) for h, r in zip(hyp_tokens, ref_tokens, strict=True)]),
        f1=np.array([m.f1_counts(h, r) for h, r in zip(hyp_tokens, ref_tokens, strict=True)], dtype=float),
        loop=np.array([float(m.has_loop(h)) for h in hyp_tokens]),
        grams=(_gram_matrix(hyp_tokens, 1), _gram_matrix(hyp_tokens, 2)),
        judge=np.array([v if v is not None else (np.nan, np.nan) for v in verdicts], dtype=float),
    )


def _bleu(num: np.ndarray, den: np.ndarray, hyp_len: np.ndarray, ref_len: np.ndarray
          ) -> dict[str, np.ndarray]:
    """NLTK's corpus BLEU-1..4 (smoothing method 1, epsilon 1e-12) of summed counts, one row per resample."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(hyp_len > ref_len, 1.0,
                      np.where(hyp_len == 0, 0.0, np.exp(1 - ref_len / np.maximum(hyp_len, 1e-300))))
        log_p = np.log(np.where(num > 0, num, m.BLEU_EPSILON) / den)
    no_match = num[:, 0] == 0
    return {f"bleu{k}": np.where(no_match, 0.0, bp * np.exp(log_p[:, :k].mean(axis=1))) for k in range(1, 5)}


def sum_metrics(stats: RunStats, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric but Dist-n for each row of `weights` (B, N): how often each sample is in that resample."""
    total = weights.sum(axis=1)
    out = _bleu(weights @ stats.bleu_num, weights @ stats.bleu_den, weights @ stats.hyp_len,
                weights @ stats.ref_len)
    rouge = weights @ stats.rouge / total[:, None]
    out.update({key: rouge[:, i] for i, key in enumerate(m.ROUGE_TYPES)})
    hits, pred, gold = (weights @ stats.f1).T
    precision = (hits + m.F1_EPSILON) / (pred + m.F1_EPSILON)
    recall = (hits + m.F1_EPSILON) / (gold + m.F1_EPSILON)
    out["f1"] = 2 * precision * recall / (precision + recall)
    out["loop"] = weights @ stats.loop / total
    out["avg_len"] = weights @ stats.hyp_len / total
    valid = ~np.isnan(stats.judge)
    with np.errstate(divide="ignore", invalid="ignore"):
        judged = (weights @ np.nan_to_num(stats.judge)) / (weights @ valid.astype(float))
    out["judge_s"], out["judge_r"] = judged[:, 0], judged[:, 1]
    return out


def distinct_metrics(stats: RunStats, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Dist-1/2 (the paper's formula) of the replies selected by each row of `masks` (B, N)."""
    out = {}
    chosen = masks.astype(float)
    for key, grams in zip(DISTINCT_METRICS, stats.grams, strict=True):
        total = chosen @ np.asarray(grams.sum(axis=1)).ravel()
        distinct = np.concatenate([((grams.T @ chosen[i:i + _CHUNK].T) > 0).sum(axis=0)
                                   for i in range(0, len(chosen), _CHUNK)])
        out[key] = (distinct + m.DIST_EPSILON) / (total + m.DIST_EPSILON)
    return out


def point_estimates(stats: RunStats) -> dict[str, float]:
    ones = np.ones((1, stats.n))
    values = {**sum_metrics(stats, ones), **distinct_metrics(stats, ones.astype(bool))}
    return {key: float(v[0]) for key, v in values.items()}


def resample_weights(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) draw counts of a bootstrap with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)


def half_masks(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) masks, each selecting max(1, n // 2) samples without replacement."""
    permutations = np.argsort(rng.random((resamples, n)), axis=1)  # uniform, so is each inverse
    return permutations < max(1, n // 2)


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap interval (nan bounds when there is nothing to resample)."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    if np.all(np.isnan(values)):
        return float("nan"), float("nan")
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _samples(n: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return resample_weights(n, resamples, rng), half_masks(n, resamples, rng)


def _intervals(point: dict[str, float], summed: dict[str, np.ndarray], halves: dict[str, np.ndarray],
               level: float) -> dict[str, Interval]:
    out = {key: Interval(point[key], *_percentiles(summed[key], level)) for key in SUM_METRICS}
    for key in DISTINCT_METRICS:
        low, high = _percentiles(halves[key] - np.mean(halves[key]), level)
        out[key] = Interval(point[key], point[key] + low, point[key] + high)
    return out


def bootstrap_intervals(stats: RunStats, resamples: int = 1000, seed: int = 0, level: float = 0.95
                        ) -> dict[str, Interval]:
    """Every metric of a run with its `level` bootstrap interval (same seed: same resamples)."""
    weights, masks = _samples(stats.n, resamples, seed)
    return _intervals(point_estimates(stats), sum_metrics(stats, weights), distinct_metrics(stats, masks),
                      level)


def paired_difference(a: RunStats, b: RunStats, resamples: int = 1000, seed: int = 0, level: float = 0.95
                      ) -> dict[str, Interval]:
    """Metric of run `a` minus run `b` on the same samples (same order), with a paired bootstrap interval:
    each resample draws the same samples for both runs."""
    if a.n != b.n:
        raise ValueError(f"paired runs need the same samples: {a.n} vs {b.n}")
    weights, masks = _samples(a.n, resamples, seed)
    point_a, point_b = point_estimates(a), point_estimates(b)
    point = {key: point_a[key] - point_b[key] for key in point_a}
    sa, sb = sum_metrics(a, weights), sum_metrics(b, weights)
    ha, hb = distinct_metrics(a, masks), distinct_metrics(b, masks)
    return _intervals(point, {k: sa[k] - sb[k] for k in sa}, {k: ha[k] - hb[k] for k in ha}, level)
