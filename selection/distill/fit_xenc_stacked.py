"""Fit the xenc-stacked judge (`xenc_stack.py`): the stacked judge's fit (`fit_stacked`, same splits,
calibration and measurements) with the fine-tuned cross-encoder `XencStackedOptions.xenc` as an extra first
stage, whose inputs for the fit rows come from nets that were not fine-tuned on them (`xenc_oof.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from empathy.errors import ModelError
from selection.distill.artifact import ArtifactMeta, read_meta
from selection.distill.finetune import FinetuneModel
from selection.distill.fit_finetune import valid_parts
from selection.distill.fit_lexical import pair_input
from selection.distill.fit_stacked import StackedOptions, fit_stacked
from selection.distill.sources import LabelSet
from selection.distill.splits import split_by_conversation
from selection.distill.xenc_oof import fold_data, fold_plans, oof_predictions
from selection.distill.xenc_stack import XencBlock, xenc_features, xenc_outputs
from selection.sample import Sample

KIND = "xenc-stacked"


@dataclass(frozen=True)
class XencStackedOptions(StackedOptions):
    kind: str = KIND
    xenc: str = "paper-xenc"  # the fine-tuned cross-encoder's artifact (fitted first)
    embed: bool = False  # also the reply-embedding first stage (`embed.py`)
    oof_folds: int = 3  # out-of-fold fine-tunes over the cross-encoder's fine-tuning conversations
    oof_epochs: int = 2  # of each (the cross-encoder's other options are its own)


def xenc_fit_features(labels: LabelSet, train: Sequence[Sample], discard: np.ndarray, xenc: FinetuneModel,
                      opts: XencStackedOptions, folder: Path, encoder: Path) -> np.ndarray:
    """(n_fit, 3) cross-encoder features of the stacked judge's fit pairs (in their order), none made by a
    net fine-tuned on the pair: the cross-encoder's own on its calibration part, out-of-fold fine-tunes'
    on its fine-tuning part (cached under `folder`)."""
    fold_opts = replace(xenc.options, epochs=opts.oof_epochs)
    plans = fold_plans(labels, fold_opts, opts.oof_folds)
    out = oof_predictions(plans, fold_data(labels, train, discard, fold_opts), fold_opts, encoder, folder)
    _, cal, _ = valid_parts(labels, xenc.options)
    cal_out = xenc_outputs(xenc, [pair_input(labels.pairs[i]) for i in cal], progress=True)
    out.update({i: cal_out[j] for j, i in enumerate(cal)})
    v_fit, _ = split_by_conversation(labels.pairs, opts.holdout, opts.seed)
    missing = [i for i in v_fit if i not in out]
    if missing:
        raise ModelError(f"{len(missing)} fit pairs have no out-of-fold cross-encoder prediction; the "
                         f"cross-encoder {opts.xenc} must be fitted with holdout {opts.holdout} and seed "
                         f"{opts.seed}")
    return xenc_features(np.array([out[i] for i in v_fit]), xenc.readout)


def fit_xenc_stacked(labels: LabelSet, train: Sequence[Sample], discard: np.ndarray, base_folder: Path,
                     opts: XencStackedOptions, folder: Path, encoder: Path) -> ArtifactMeta:
    """Fit, measure and save the judge over the lexical judge at `base_folder` and the cross-encoder
    artifact `opts.xenc` beside `folder` (its out-of-fold fine-tunes resume from `folder/oof`)."""
    from selection.distill.embed import EmbedBlock

    xenc_folder = folder.parent / opts.xenc
    xenc_meta = read_meta(xenc_folder)
    if (xenc_meta.config.get("holdout"), xenc_meta.config.get("seed")) != (opts.holdout, opts.seed):
        raise ModelError(f"the cross-encoder {xenc_folder} must be fitted with holdout {opts.holdout} and "
                         f"seed {opts.seed}; re-fit it with `empathy select distill fit --kind finetune "
                         f"--name {opts.xenc}`")
    xenc = FinetuneModel.load(xenc_folder)
    oof = xenc_fit_features(labels, train, discard, xenc, opts, folder, encoder)
    block = XencBlock(oof, xenc, opts.xenc, xenc_meta.version, EmbedBlock(opts.folds) if opts.embed else None)
    return fit_stacked(labels, train, discard, base_folder, opts, folder, block)
