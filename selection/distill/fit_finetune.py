"""Fit the fine-tuned judge (`finetune.py`), with the splits and measurements of the stacked judge so the
numbers compare:

1. Valid conversations: the stacked judge's held-out part (`split_by_conversation`, measured only); of the
   rest, a calibration part (`FinetuneOptions.calibration`, a second seeded split) is kept out of the
   fine-tuning as well, the remainder trains the S/R head.
2. Train conversations: the held-out ones (`heldout_mask`, as the lexical discard head's) are measured only;
   the others train the discard logit.
3. After the fine-tuning, the readout ("dist" or "mse", `finetune.py`) with the better Spearman on the
   calibration conversations is kept, and the bucket rule (`stacked.calibrate_rule`) is calibrated for
   macro-F1 on them, among the rules that discard the held-out train conversations' paper discards
   with `min_precision` and `min_recall` (`DiscardCheck`), the head cut chosen as the stacked judge's.
4. Measured on the held-out valid conversations (confusion, macro-F1, discard P/R, Spearman, fractions) and
   the held-out train conversations (discard P/R).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from selection.distill.artifact import ArtifactMeta
from selection.distill.calibrate import BUCKETS, discard_pr
from selection.distill.finetune import (
    KIND,
    READOUTS,
    FinetuneModel,
    FinetuneOptions,
    build_net,
    encode_rows,
    readout_scores,
)
from selection.distill.finetune_train import Checkpoint, TaskData, fit_net
from selection.distill.fit_lexical import heldout_mask, pair_input, save_model_artifact
from selection.distill.fit_stacked import DISCARD_FRACTIONS, valid_selection_metrics
from selection.distill.labels import label_set_hash
from selection.distill.lexical import lexical_input
from selection.distill.sources import LabelSet
from selection.distill.splits import split_by_conversation
from selection.distill.stacked import DISCARD, BucketRule, DiscardCheck, calibrate_rule, paper_codes
from selection.sample import Sample

CHECKPOINT_FILE = "checkpoint.pt"


def valid_parts(labels: LabelSet, opts: FinetuneOptions) -> tuple[list[int], list[int], list[int]]:
    """Indexes (fine-tune, calibrate, held out) of the valid pairs, each a set of whole conversations."""
    fit, held = split_by_conversation(labels.pairs, opts.holdout, opts.seed)
    tune, cal = split_by_conversation([labels.pairs[i] for i in fit], opts.calibration, opts.seed + 1)
    return [fit[i] for i in tune], [fit[i] for i in cal], held


def labels_hash(labels: LabelSet, discard: np.ndarray) -> str:
    return f"{label_set_hash(labels.pairs)}-{hashlib.sha256(np.packbits(discard).tobytes()).hexdigest()[:8]}"


def readout_spearman(scores: np.ndarray, true: np.ndarray) -> dict[str, list[float]]:
    """Spearman S and R of each readout (`FinetuneNet.scores`) against the teacher's scores."""
    from scipy.stats import spearmanr

    return {name: [float(spearmanr(readout_scores(scores, name)[:, k], true[:, k]).statistic) for k in (0, 1)]
            for name in READOUTS}


def _calibrate(model: FinetuneModel, cal: tuple[np.ndarray, np.ndarray], cal_true: np.ndarray,
               train_held: tuple[np.ndarray, np.ndarray], discard: np.ndarray) -> DiscardCheck:
    """Choose the readout that ranks the calibration conversations better, then the bucket rule on them
    under the train discard check (returned: its predictions measure the rule on held-out train)."""
    ranks = readout_spearman(cal[0], cal_true)
    model.readout = max(READOUTS, key=lambda name: float(np.mean(ranks[name])))
    t_sr = readout_scores(train_held[0], model.readout)
    check = DiscardCheck(t_sr[:, 0], t_sr[:, 1], train_held[1], discard, model.options.min_precision,
                         model.options.min_recall)
    sr = readout_scores(cal[0], model.readout)
    p_grid = [float(np.quantile(check.p, 1.0 - f)) for f in DISCARD_FRACTIONS] + [float("inf")]
    model.rule = calibrate_rule(sr[:, 0], sr[:, 1], cal[1], paper_codes(cal_true[:, 0], cal_true[:, 1]),
                                p_grid, check)
    return check


def fit_finetune(labels: LabelSet, train: Sequence[Sample], discard: np.ndarray, opts: FinetuneOptions,
                 folder: Path, encoder_path: Path) -> ArtifactMeta:
    """Fine-tune, calibrate, measure and save the judge to `folder` (an interrupted fit resumes from its
    checkpoint there); returns its metadata."""
    start = time.monotonic()
    pairs = labels.pairs
    tune, cal, held = valid_parts(labels, opts)
    rows = [pair_input(p) for p in pairs]
    targets = np.array([[p.sensibility, p.rationality] for p in pairs], dtype=np.float64)
    t_rows = [lexical_input(s) for s in train]
    t_held_mask = heldout_mask([s.conv_id for s in train], opts.holdout, opts.seed)
    t_fit, t_held = np.flatnonzero(~t_held_mask), np.flatnonzero(t_held_mask)
    net, tokenizer = build_net(encoder_path, opts.freeze_embeddings)
    data = TaskData(encode_rows(tokenizer, [rows[i] for i in tune], opts), targets[tune],
                    encode_rows(tokenizer, [t_rows[i] for i in t_fit], opts), discard[t_fit].astype(bool))
    key = {**opts.config(), "labels": labels_hash(labels, discard), "encoder": str(encoder_path)}
    checkpoint = Checkpoint(folder / CHECKPOINT_FILE, key)
    losses = fit_net(net, data, opts, tokenizer.pad_token_id, tokenizer.sep_token_id, checkpoint)
    tune_seconds = time.monotonic() - start
    model = FinetuneModel(None, None, BucketRule(), net=net, tokenizer=tokenizer, options=opts)
    if opts.runtime == "onnx":
        model.use_onnx(folder, export=True)
    cal_out = model.predict_rows([rows[i] for i in cal], progress=True)
    check = _calibrate(model, cal_out, targets[cal],
                       model.predict_rows([t_rows[i] for i in t_held], progress=True), discard[t_held])
    held_out = model.predict_rows([rows[i] for i in held], progress=True)
    held_sr, held_p = readout_scores(held_out[0], model.readout), held_out[1]
    codes = model.rule.codes(held_sr[:, 0], held_sr[:, 1], held_p)
    valid_metrics, details = valid_selection_metrics(held_sr, codes, targets[held])
    t_pred = model.rule.codes(check.s, check.r, check.p) == DISCARD
    readouts = {"calibration": readout_spearman(cal_out[0], targets[cal]),
                "heldout": readout_spearman(held_out[0], targets[held])}
    meta = ArtifactMeta(
        name=folder.name, version="", config=opts.config(),
        label_source=f"{labels.source}; keep/discard: {len(discard)} train labels",
        label_hash=labels_hash(labels, discard), n_train=len(tune) + len(t_fit),
        n_heldout=len(held) + len(t_held),
        metrics={"distilled": valid_metrics, "train_discard_heldout": discard_pr(t_pred, check.labels)},
        train_seconds=round(time.monotonic() - start, 1),
        extra={"rule": asdict(model.rule), "threshold": model.rule.p_max, **details,
               "readout": model.readout, "readout_spearman_s_r": readouts,
               "valid_heldout": len(held), "valid_calibration": len(cal), "valid_tune": len(tune),
               "train_heldout": len(t_held), "train_fit": len(t_fit), "epoch_losses": losses,
               "tune_seconds": round(tune_seconds, 1), "buckets": list(BUCKETS)},
    )
    heldout = {"true": targets[held], "pred": held_sr, "p_discard": held_p, "codes": codes,
               "ids": np.array([pairs[i].sample_id for i in held])}
    meta = save_model_artifact(folder, model, meta, heldout, KIND)
    checkpoint.remove()
    return meta
