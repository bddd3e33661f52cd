"""Out-of-fold predictions of the fine-tuned cross-encoder (`finetune.py`) on the valid conversations it
was fine-tuned on, for the second stage of the `xenc-stacked` judge (`xenc_stack.py`).

The fine-tuned judge (`fit_finetune.valid_parts`) splits the valid pairs into a fine-tuning part, a
calibration part (never fine-tuned on) and the held-out part. Its own predictions on the calibration part
are already out of sample; the fine-tuning part is split into `folds` groups of whole conversations and
each is predicted by a net fine-tuned (as the judge, `FinetuneOptions`) on the other groups plus the
calibration part and the same train keep/discard data. So the second stage sees a prediction made without
its label for every valid pair outside the held-out part.

Each fold's predictions are cached under `<artifact>/oof/` (keyed by options, labels and rows), and its
fine-tuning resumes from its checkpoint there, so an interrupted fit loses at most a few minutes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selection.distill.finetune import FinetuneModel, FinetuneOptions, build_net, encode_rows
from selection.distill.finetune_train import Checkpoint, TaskData, fit_net
from selection.distill.fit_finetune import valid_parts
from selection.distill.lexical import LexicalInput
from selection.distill.sources import LabelSet
from selection.distill.stacked import BucketRule
from selection.distill.xenc_stack import xenc_outputs

log = logging.getLogger("empathy.selection.distill")
OOF_DIR = "oof"
N_OUT = 5  # both readouts' S, R (`FinetuneNet.scores`) and P(discard)


@dataclass(frozen=True)
class FoldPlan:
    """Valid pair indexes: `fit` of each fold's fine-tuning, `pred` of the pairs it predicts."""

    fit: list[int]
    pred: list[int]


def fold_plans(labels: LabelSet, opts: FinetuneOptions, folds: int) -> list[FoldPlan]:
    """Grouped folds over the fine-tuning part (`valid_parts`); every fold also fine-tunes on the
    calibration part, which the judge's own net predicts."""
    from sklearn.model_selection import GroupKFold

    tune, cal, _ = valid_parts(labels, opts)
    groups = np.array([labels.pairs[i].conv for i in tune])
    plans = []
    for fit_idx, pred_idx in GroupKFold(folds).split(np.zeros(len(tune)), groups=groups):
        plans.append(FoldPlan(sorted([tune[i] for i in fit_idx] + cal), [tune[i] for i in pred_idx]))
    return plans


@dataclass(frozen=True)
class FoldData:
    """What every fold fine-tunes on beside its valid pairs: the train keep/discard rows."""

    rows: list[LexicalInput]  # valid pairs, in label order
    targets: np.ndarray  # (n_valid, 2)
    train_rows: list[LexicalInput]  # the train rows the judge's discard logit was fitted on
    train_discard: np.ndarray  # (n_train_fit,) bool
    labels_hash: str


def _key(plan: FoldPlan, data: FoldData, opts: FinetuneOptions, encoder: Path) -> dict[str, Any]:
    rows = hashlib.sha256(json.dumps([plan.fit, plan.pred]).encode()).hexdigest()[:12]
    return {**opts.config(), "labels": data.labels_hash, "rows": rows, "encoder": str(encoder)}


def _cached(path: Path, key: dict[str, Any], n: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    with np.load(path) as f:
        if str(f["key"]) != json.dumps(key, sort_keys=True) or f["out"].shape != (n, N_OUT):
            log.warning("ignoring %s: written for other options or rows", path)
            return None
        return np.asarray(f["out"], dtype=np.float64)


def fold_predictions(plan: FoldPlan, data: FoldData, opts: FinetuneOptions, encoder: Path, path: Path
                     ) -> np.ndarray:
    """(len(plan.pred), 5) predictions of a net fine-tuned on `plan.fit` (cached at `path`, resumed from
    the checkpoint beside it)."""
    key = _key(plan, data, opts, encoder)
    out = _cached(path, key, len(plan.pred))
    if out is not None:
        return out
    net, tokenizer = build_net(encoder, opts.freeze_embeddings)
    task = TaskData(encode_rows(tokenizer, [data.rows[i] for i in plan.fit], opts), data.targets[plan.fit],
                    encode_rows(tokenizer, data.train_rows, opts), data.train_discard)
    checkpoint = Checkpoint(path.with_suffix(".pt"), key)
    fit_net(net, task, opts, tokenizer.pad_token_id, tokenizer.sep_token_id, checkpoint)
    model = FinetuneModel(None, None, BucketRule(), net=net, tokenizer=tokenizer, options=opts)
    out = xenc_outputs(model, [data.rows[i] for i in plan.pred])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, out=out, key=np.array(json.dumps(key, sort_keys=True)))
    partial.replace(path)
    checkpoint.remove()
    return out


def oof_predictions(plans: Sequence[FoldPlan], data: FoldData, opts: FinetuneOptions, encoder: Path,
                    folder: Path) -> dict[int, np.ndarray]:
    """Valid pair index -> its out-of-fold (5,) prediction, over every fold (one fine-tuning at a time)."""
    out: dict[int, np.ndarray] = {}
    for k, plan in enumerate(plans):
        log.info("out-of-fold fine-tuning %d/%d: %d valid pairs, predicting %d", k + 1, len(plans),
                 len(plan.fit), len(plan.pred))
        pred = fold_predictions(plan, data, opts, encoder, folder / OOF_DIR / f"fold{k}-of-{len(plans)}.npz")
        out.update({i: pred[j] for j, i in enumerate(plan.pred)})
    return out


def fold_data(labels: LabelSet, train: Sequence[Any], discard: np.ndarray, opts: FinetuneOptions) -> FoldData:
    """The valid rows and targets, and the train rows outside the held-out train conversations (as the
    judge's fit, `fit_finetune`)."""
    from selection.distill.fit_finetune import labels_hash
    from selection.distill.fit_lexical import heldout_mask, pair_input
    from selection.distill.lexical import lexical_input

    t_fit = np.flatnonzero(~heldout_mask([s.conv_id for s in train], opts.holdout, opts.seed))
    return FoldData([pair_input(p) for p in labels.pairs],
                    np.array([[p.sensibility, p.rationality] for p in labels.pairs], dtype=np.float64),
                    [lexical_input(train[i]) for i in t_fit], discard[t_fit].astype(bool),
                    labels_hash(labels, discard))
