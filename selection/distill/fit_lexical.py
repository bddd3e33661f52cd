"""Fit the lexical judge (`selection/distill/lexical.py`): S and R from the valid-split scores, the discard
head from the train split's keep/discard labels, both held out by conversation; calibrate the discard
threshold on the held-out train conversations; measure the selection on the held-out valid conversations
against the paper's buckets (S > 5 and R < 5: sensibility, R > 5: rationality, else discard)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from selection.distill.artifact import FORMAT_VERSION, META_FILE, ArtifactMeta
from selection.distill.calibrate import (
    BUCKETS,
    Calibration,
    bucket_fractions,
    calibrate,
    decide_buckets,
    discard_pr,
    rationality_shift,
)
from selection.distill.labels import LabeledPair, label_set_hash
from selection.distill.lexical import (
    LexicalFeatures,
    LexicalInput,
    LexicalModel,
    fit_discard_head,
    fit_score_head,
    lexical_input,
)
from selection.distill.metrics import agreement, buckets
from selection.distill.sources import LabelSet
from selection.distill.splits import split_by_conversation
from selection.distill.text import normalize
from selection.sample import Sample

KIND = "lexical"


@dataclass(frozen=True)
class LexicalOptions:
    holdout: float = 0.2
    seed: int = 0
    calibration: Calibration = "f1"
    discard_c: float = 0.5
    r_threshold: float = 5.0

    def config(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}


def heldout_mask(convs: Sequence[str], holdout: float, seed: int) -> np.ndarray:
    """True for samples of held-out conversations (a seeded hash of the conversation id)."""
    def rank(conv: str) -> float:
        return int(hashlib.sha256(f"{seed}:{conv}".encode()).hexdigest()[:8], 16) / 16**8

    return np.array([rank(c) < holdout for c in convs], dtype=bool)


def pair_input(p: LabeledPair) -> LexicalInput:
    return LexicalInput(normalize(p.context[-1]) if p.context else "", normalize(p.response), len(p.context))


def selection_metrics(pred: np.ndarray, true: np.ndarray, p: np.ndarray, threshold: float,
                      r_threshold: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of the decided buckets against the paper's on held-out valid items, and the details."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    decided = decide_buckets(pred[:, 0], pred[:, 1], p >= threshold, r_threshold)
    paper = buckets(true[:, 0], true[:, 1])
    metrics = {**agreement(pred, true),
               "bucket_accuracy": float(accuracy_score(paper, decided)),
               "bucket_macro_f1": float(f1_score(paper, decided, labels=list(BUCKETS), average="macro",
                                                 zero_division=0)),
               **discard_pr(decided == "discard", paper == "discard")}
    details = {"confusion": confusion_matrix(paper, decided, labels=list(BUCKETS)).tolist(),
               "fractions": bucket_fractions(decided), "paper_fractions": bucket_fractions(paper)}
    return metrics, details


def _fit_discard(train_rows: list[LexicalInput], y: np.ndarray, held: np.ndarray, feats: LexicalFeatures,
                 opts: LexicalOptions) -> tuple[Any, float, dict[str, float], Any]:
    """The discard head, its threshold, its held-out metrics, and the held-out rows' features."""
    fit_idx, held_idx = np.where(~held)[0], np.where(held)[0]
    head = fit_discard_head(feats.transform([train_rows[i] for i in fit_idx]), y[fit_idx], opts.discard_c)
    x_held = feats.transform([train_rows[i] for i in held_idx])
    p = head.predict_proba(x_held)[:, 1]
    threshold = calibrate(p, y[held_idx], opts.calibration)
    return head, threshold, discard_pr(p >= threshold, y[held_idx].astype(bool)), x_held


def _r_shift(model: LexicalModel, x_held: Any, targets: np.ndarray, r_threshold: float) -> float:
    """Shift R so that, among the held-out train samples the head keeps (no S/R labels there, so no
    leakage), the paper's share of rationality among kept valid labels passes the threshold."""
    s, r = targets[:, 0], targets[:, 1]
    rat, sens = int(np.sum(r > r_threshold)), int(np.sum((s > 5.0) & (r < r_threshold)))
    kept = model.discard.predict_proba(x_held)[:, 1] < model.threshold
    r_pred = np.asarray(model.scores.predict(x_held))[kept, 1]
    return rationality_shift(r_pred, float(rat / max(rat + sens, 1)), r_threshold)


def fit_lexical(labels: LabelSet, train: Sequence[Sample], discard: np.ndarray, discard_source: str,
                opts: LexicalOptions, folder: Path) -> ArtifactMeta:
    """Fit, measure and save the lexical judge to `folder`; returns its metadata."""
    start = time.monotonic()
    pairs = labels.pairs
    v_train, v_held = split_by_conversation(pairs, opts.holdout, opts.seed)
    v_rows = [pair_input(p) for p in pairs]
    targets = np.array([[p.sensibility, p.rationality] for p in pairs], dtype=np.float32)
    t_rows = [lexical_input(s) for s in train]
    t_held = heldout_mask([s.conv_id for s in train], opts.holdout, opts.seed)
    feats = LexicalFeatures().fit([t_rows[i] for i in np.where(~t_held)[0]] + [v_rows[i] for i in v_train])
    head, threshold, train_metrics, x_held = _fit_discard(t_rows, discard.astype(int), t_held, feats, opts)
    scores = fit_score_head(feats.transform([v_rows[i] for i in v_train]), targets[v_train])
    model = LexicalModel(feats, scores, head, threshold)
    model.r_shift = _r_shift(model, x_held, targets[v_train], opts.r_threshold)
    out = model.predict([v_rows[i] for i in v_held])
    valid_metrics, details = selection_metrics(out[:, :2], targets[v_held], out[:, 2], threshold,
                                               opts.r_threshold)
    meta = ArtifactMeta(
        name=folder.name, version="", config=opts.config(),
        label_source=f"{labels.source}; keep/discard: {discard_source}",
        label_hash=f"{label_set_hash(pairs)}-{hashlib.sha256(np.packbits(discard).tobytes()).hexdigest()[:8]}",
        n_train=len(v_train) + int((~t_held).sum()), n_heldout=len(v_held) + int(t_held.sum()),
        metrics={"distilled": valid_metrics, "train_discard_heldout": train_metrics},
        train_seconds=round(time.monotonic() - start, 1),
        extra={"threshold": threshold, "r_shift": model.r_shift, **details,
               "thresholds": [5.0, opts.r_threshold], "valid_heldout": len(v_held),
               "train_heldout": int(t_held.sum())},
    )
    heldout = {"true": targets[v_held], "pred": out[:, :2], "p_discard": out[:, 2],
               "ids": np.array([pairs[i].sample_id for i in v_held])}
    return save_model_artifact(folder, model, meta, heldout, KIND)


def save_model_artifact(folder: Path, model: Any, meta: ArtifactMeta, heldout: dict[str, np.ndarray],
                        kind: str) -> ArtifactMeta:
    """Write the model (its `save(folder)` returns the file), then the metadata last (a folder without
    `distilled.json` is not an artifact); the version hashes the model file."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).unlink(missing_ok=True)
    path = model.save(folder)
    np.savez(folder / "heldout.npz", **cast(dict[str, Any], heldout))
    meta.version = f"v{FORMAT_VERSION}-{kind}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    (folder / META_FILE).write_text(json.dumps(meta.__dict__, indent=2), encoding="utf-8")
    return meta
