"""The I/O of the router's reply-kind stage (`training.router.kind`): context features cached by sample id,
the judge's R of the replies outside the router's conversations, the fit with its report."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empathy.errors import DataError
from empathy.layout import Layout
from empathy.router import ENCODER_NAME, EXTRA_FEATURES, ContextEncoder, featurize
from empathy.settings import Settings
from selection.sample import Sample
from training.router.cache import FEATURES_FILE, load_cache, save_cache
from training.router.fit import fold_of
from training.router.kind import KindModel, choose_alpha, fit_kind, spearman

log = logging.getLogger("empathy.router")
FEATURE_CHUNK = 4096  # contexts encoded between two saves of the feature cache
KIND_SCORE = "rationality"  # the judge's score that splits the experts' data


def context_features(folder: Path, samples: Sequence[Sample]) -> np.ndarray:
    """Router features of each sample's context, cached in `folder` by sample id (a rerun encodes nothing,
    an interrupted run resumes)."""
    key = [ENCODER_NAME, *EXTRA_FEATURES]
    rows = load_cache(folder, key, FEATURES_FILE)
    todo = list({s.id: s for s in samples if s.id not in rows}.values())
    if todo:
        from tqdm import tqdm

        encoder = ContextEncoder()
        with tqdm(total=len(todo), desc="router context features", unit="sample") as bar:
            for start in range(0, len(todo), FEATURE_CHUNK):
                chunk = todo[start:start + FEATURE_CHUNK]
                for sample, row in zip(chunk, featurize(encoder, [s.messages() for s in chunk]), strict=True):
                    rows[sample.id] = row
                save_cache(folder, key, rows, FEATURES_FILE, dtype=np.float32)
                bar.update(len(chunk))
    return np.array([rows[s.id] for s in samples], dtype=np.float32)


def judged_scores(subsets_dir: Path) -> tuple[dict[str, float], str]:
    """The judge's R of every reply the selection scored, from its `full` subset (every scored sample), and
    the corpus split they come from (its manifest's; train without one)."""
    from training.sft_data import read_subset

    path = Layout(subsets_dir.parent).subset("full")
    try:
        rows = read_subset(path)
    except DataError as exc:
        raise DataError(f"the router's reply-kind stage needs the judge's scores: {exc} Or set "
                        "EMPATHY_ROUTER_FEATURES=context (the router on context features only).") from exc
    manifest = Layout(subsets_dir.parent).subsets_manifest
    split = json.loads(manifest.read_text()).get("split", "train") if manifest.is_file() else "train"
    return {str(r["id"]): float(r[KIND_SCORE]) for r in rows if r.get(KIND_SCORE) is not None}, str(split)


def kind_samples(samples: Sequence[Sample], scores: dict[str, float], router_convs: set[str],
                 limit: int | None, seed: int = 0) -> tuple[list[Sample], np.ndarray]:
    """Scored samples from conversations the router never sees (so its inputs are out-of-sample on every
    router sample), a seeded pick of `limit`; and their scores as a one-column matrix."""
    pool = [s for s in samples if s.id in scores and s.conv_id not in router_convs]
    if len(pool) < 10:
        raise DataError(f"only {len(pool)} scored samples outside the router's conversations; the reply-kind "
                        "stage needs more: run `empathy select split` on more samples (--limit) or set "
                        "EMPATHY_ROUTER_FEATURES=context.")
    random.Random(seed).shuffle(pool)
    pool = pool[:limit] if limit else pool
    return pool, np.array([[scores[s.id]] for s in pool], dtype=np.float64)


def fit_reply_kind(settings: Settings, samples: Sequence[Sample], features: np.ndarray,
                   folder: Path) -> tuple[KindModel, dict[str, Any]]:
    """The ridge context -> R, fitted on scored samples outside the conversations of the router's `samples`
    (whose `features` are given; `folder` holds the feature cache); its Spearman on those samples, which it
    never saw, goes into the report."""
    from selection.corpus import load_corpus

    scores, split = judged_scores(Layout(settings.data_dir).subsets)
    corpus = load_corpus(settings, split).samples
    pool, targets = kind_samples(corpus, scores, {s.conv_id for s in samples}, settings.router_kind_limit)
    log.info("router reply-kind stage: %d scored samples", len(pool))
    x = context_features(folder, pool)
    alpha, cv = choose_alpha(x, targets, fold_of([s.conv_id for s in pool], 3))
    kind = fit_kind(x, targets, alpha)
    meta: dict[str, Any] = {"score": KIND_SCORE, "split": split, "n": len(pool), "alpha": alpha,
                            "cv_spearman": cv}
    known = [i for i, s in enumerate(samples) if s.id in scores]
    if len(known) > 2:
        truth = np.array([scores[samples[i].id] for i in known])
        meta["router_samples_spearman"] = round(spearman(kind.predict(features[known])[:, 0], truth), 4)
    return kind, meta


def mean_reply_tokens(settings: Settings, samples: Sequence[Sample]) -> float:
    """Mean length of the samples' gold replies in the base model's tokens (the scale of the router's
    reply-level probabilities, `training.router.kind.fit_nll_head`)."""
    from transformers import AutoTokenizer

    from empathy.base_model import base_model_path
    from training.router.nll import reply_span

    tokenizer = AutoTokenizer.from_pretrained(base_model_path(settings))
    spans = [reply_span(tokenizer, s.messages(), max_tokens=settings.vllm_max_model_len - 1) for s in samples]
    return float(np.mean([span.end - span.start for span in spans])) if spans else 1.0
