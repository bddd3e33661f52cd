"""Fit a distilled judge: split by conversation, fine-tune the cross-encoder, measure it on the held-out part
against the MiniLM + ridge baseline of the same run, save the artifact."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empathy.errors import DataError
from selection.distill.artifact import ArtifactMeta, save_artifact
from selection.distill.baseline import embed_pairs, fit_ridge, minilm_path
from selection.distill.encoder import EncoderConfig, build_model, encode_pairs
from selection.distill.labels import LabeledPair, label_set_hash
from selection.distill.metrics import agreement
from selection.distill.sources import LabelSet
from selection.distill.splits import split_by_conversation
from selection.distill.text import context_text, normalize
from selection.distill.train import fit_encoder, predict_encoder

MIN_PAIRS = 10


@dataclass(frozen=True)
class FitOptions:
    holdout: float = 0.2
    seed: int = 0
    baseline: bool = True
    s_threshold: float = 5.0
    r_threshold: float = 5.0


def _texts(pairs: Sequence[LabeledPair]) -> tuple[list[str], list[str], np.ndarray]:
    contexts = [context_text(p.context) for p in pairs]
    responses = [normalize(p.response) for p in pairs]
    targets = np.array([[p.sensibility, p.rationality] for p in pairs], dtype=np.float32)
    return contexts, responses, targets


def _baseline(contexts: list[str], responses: list[str], targets: np.ndarray, train: list[int],
              held: list[int]) -> np.ndarray:
    """Held-out predictions of ridge on MiniLM embeddings, fitted on the train part."""
    order = train + held
    features = embed_pairs([contexts[i] for i in order], [responses[i] for i in order])
    ridge = fit_ridge(features[: len(train)], targets[train])
    return np.asarray(ridge.predict(features[len(train):]), dtype=np.float32)


def _check(pairs: Sequence[LabeledPair], train: list[int], held: list[int]) -> None:
    if len(pairs) < MIN_PAIRS or not train or not held:
        raise DataError(f"{len(pairs)} labelled samples ({len(train)} train, {len(held)} held out) are "
                        f"too few to fit and measure a judge; need {MIN_PAIRS}+ from 2+ conversations.")


def fit_distilled(labels: LabelSet, cfg: EncoderConfig, opts: FitOptions, folder: Path) -> ArtifactMeta:
    """Train on the train part, measure on the held-out part, save to `folder`; returns the metadata."""
    pairs = labels.pairs[: cfg.limit_train] if cfg.limit_train else labels.pairs
    train, held = split_by_conversation(pairs, opts.holdout, opts.seed)
    _check(pairs, train, held)
    contexts, responses, targets = _texts(pairs)
    model, tokenizer = build_model(minilm_path(), cfg)
    seqs = encode_pairs(tokenizer, contexts, responses, cfg)
    start = time.monotonic()
    losses = fit_encoder(model, [seqs[i] for i in train], targets[train], cfg,
                         tokenizer.pad_token_id, tokenizer.sep_token_id)
    seconds = time.monotonic() - start
    pred = predict_encoder(model, [seqs[i] for i in held], tokenizer.pad_token_id, tokenizer.sep_token_id)
    thresholds = (opts.s_threshold, opts.r_threshold)
    metrics = {"distilled": agreement(pred, targets[held], *thresholds)}
    heldout = {"true": targets[held], "pred": pred, "ids": np.array([pairs[i].sample_id for i in held])}
    if opts.baseline:
        base = _baseline(contexts, responses, targets, train, held)
        metrics["baseline_ridge_minilm"] = agreement(base, targets[held], *thresholds)
        heldout["baseline"] = base
    meta = ArtifactMeta(
        name=folder.name, version="", config=cfg.to_json(), label_source=labels.source,
        label_hash=label_set_hash(pairs), n_train=len(train), n_heldout=len(held), metrics=metrics,
        train_seconds=round(seconds, 1),
        extra={"epoch_losses": losses, "holdout": opts.holdout, "seed": opts.seed,
               "thresholds": list(thresholds)},
    )
    return save_artifact(folder, model, tokenizer, meta, heldout)
