"""The xenc-stacked judge (artifact kind `xenc-stacked`, e.g. `distilled:paper-xenc-stacked`): the stacked
judge (`stacked.py`) whose second stage also reads the fine-tuned cross-encoder's outputs (`finetune.py`,
the artifact `XencStackedOptions.xenc`, e.g. `paper-xenc`): its S and R (the readout it was fitted with)
and its discard logit, beside the lexical ridge's S and R (and the reply-embedding ridge's, with `embed`).

The second stage and the bucket rule are fitted on predictions the cross-encoder made for replies it was
not fine-tuned on: its own on its calibration conversations, and out-of-fold fine-tunes' on the rest of
the valid conversations (`xenc_oof.py`). At inference the judge runs the full cross-encoder (standard
stacking); the cross-encoder is read from its own artifact (by name, checked by version), not copied.

Held out by conversation (the 1,147 valid replies of the other judges; issue 18), `paper-xenc-stacked`
against paper-embed / paper-xenc: Spearman S 0.567 (0.548 / 0.566), R 0.656 (0.621 / 0.636), bucket macro-F1
0.508 (0.499 / 0.488), valid discard P/R 0.117 / 0.192 (0.112 / 0.179); train held-out discard P/R 0.420 /
0.614. The reply-embedding block (`embed`) adds R +0.007 and macro-F1 -0.002 at 3x the scoring cost, so it is
off by default; 130 items per CPU-second without it.

Fitting in `fit_xenc_stacked.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empathy.errors import ModelError
from selection.distill.embed import EmbedModel, reply_embeddings
from selection.distill.stacked import BucketRule, logit, stack_features

MODEL_FILE = "xenc-stacked.joblib"


def xenc_outputs(xenc: Any, rows: Sequence[Any], progress: bool = False) -> np.ndarray:
    """(n, 5) a cross-encoder's (`FinetuneModel`) both readouts' S, R and P(discard) of `rows`."""
    scores, p = xenc.predict_rows(rows, progress=progress)
    return np.column_stack([scores, p])


def xenc_features(out: np.ndarray, readout: str) -> np.ndarray:
    """(n, 3) second-stage inputs from the cross-encoder's (n, 5) outputs (both readouts' S, R, then
    P(discard)): the readout's S and R and the discard logit."""
    sr = out[:, :2] if readout == "dist" else out[:, 2:4]
    return np.column_stack([sr, logit(out[:, 4])])


@dataclass
class XencStackedModel(EmbedModel):
    """The stacked judge whose second stage also reads the cross-encoder `xenc` (a `FinetuneModel`, loaded
    from the artifact `xenc_name` beside this one) and, if `embed_head` is set, the reply embedding."""

    xenc_name: str = ""
    xenc_version: str = ""
    xenc: Any = field(default=None, repr=False)

    def first_stage(self, rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Every first stage's inputs to the second stage, and the lexical discard head's P(discard)."""
        x = self.base.features.transform(rows)
        blocks = [np.asarray(self.base.scores.predict(x), dtype=np.float64)]
        if self.embed_head is not None:
            blocks.append(self.embed_head.predict(reply_embeddings([r.response for r in rows])))
        blocks.append(xenc_features(xenc_outputs(self.xenc, rows), self.xenc.readout))
        return np.hstack(blocks), self.base.discard.predict_proba(x)[:, 1]

    def raw_scores(self, rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        from selection.distill.lexical import dense_features

        first, p = self.first_stage(rows)
        return np.asarray(self.stacker.predict(stack_features(first, p, dense_features(rows)))), p

    def save(self, folder: Path) -> Path:
        """The stage heads and rule (joblib); the cross-encoder stays in its own artifact."""
        from selection.distill.lexical import dump_model

        xenc, self.xenc = self.xenc, None
        try:
            return dump_model(self, folder / MODEL_FILE)
        finally:
            self.xenc = xenc

    @staticmethod
    def load(folder: Path) -> XencStackedModel:
        from selection.distill.artifact import read_meta
        from selection.distill.finetune import FinetuneModel
        from selection.distill.lexical import load_model

        model = load_model(folder / MODEL_FILE, XencStackedModel)
        xenc_folder = folder.parent / model.xenc_name
        found = read_meta(xenc_folder).version
        if found != model.xenc_version:
            raise ModelError(f"{folder.name} was fitted over the cross-encoder {model.xenc_name} "
                             f"{model.xenc_version}, but {xenc_folder} holds {found}; re-fit it: "
                             f"`empathy select distill fit --kind xenc-stacked --name {folder.name}`")
        model.xenc = FinetuneModel.load(xenc_folder)
        return model


@dataclass
class XencBlock:
    """The extra first stage `fit_stacked` fits beside the lexical ridge: the cross-encoder's features of
    the fit rows made without their labels (`oof`, (n_fit, 3) `xenc_features`, in the rows' order), after
    the embedding block's out-of-fold predictions if `embed` is given."""

    oof: np.ndarray
    xenc: Any  # the full FinetuneModel
    xenc_name: str
    xenc_version: str
    embed: Any = None  # an `embed.EmbedBlock`, or None

    def fit_oof(self, rows: Sequence[Any], targets: np.ndarray, groups: np.ndarray) -> np.ndarray:
        if len(rows) != len(self.oof):
            raise ModelError(f"{len(self.oof)} out-of-fold cross-encoder predictions for {len(rows)} rows")
        blocks = [] if self.embed is None else [self.embed.fit_oof(rows, targets, groups)]
        return np.hstack([*blocks, self.oof])

    def model(self, base: Any, stacker: Any) -> XencStackedModel:
        head = None if self.embed is None else self.embed.head
        return XencStackedModel(base, stacker, BucketRule(), embed_head=head, xenc_name=self.xenc_name,
                                xenc_version=self.xenc_version, xenc=self.xenc)
