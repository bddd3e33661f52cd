"""A loaded distilled judge as a plain predictor: texts or samples in, (n, 2) S and R out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selection.distill.artifact import ArtifactMeta, load_artifact, read_meta
from selection.distill.encoder import CrossEncoderScorer, encode_pairs
from selection.distill.text import sample_texts
from selection.distill.train import predict_encoder
from selection.sample import Sample


@dataclass
class DistilledScorer:
    model: CrossEncoderScorer
    tokenizer: Any
    meta: ArtifactMeta

    @classmethod
    def load(cls, folder: Path) -> DistilledScorer:
        model, tokenizer, meta = load_artifact(folder)
        return cls(model, tokenizer, meta)

    def predict_texts(self, contexts: Sequence[str], responses: Sequence[str], batch_size: int = 64,
                      progress: bool = False) -> np.ndarray:
        seqs = encode_pairs(self.tokenizer, contexts, responses, self.meta.encoder_config())
        return predict_encoder(self.model, seqs, self.tokenizer.pad_token_id, self.tokenizer.sep_token_id,
                               batch_size=batch_size, progress=progress)

    def predict_samples(self, samples: Sequence[Sample], batch_size: int = 64) -> np.ndarray:
        texts = [sample_texts(s) for s in samples]
        return self.predict_texts([c for c, _ in texts], [r for _, r in texts], batch_size)


@dataclass
class LexicalScorer:
    """The lexical judge (artifact kind `lexical`): (n, 3) S, R and P(discard) out."""

    model: Any  # selection.distill.lexical.LexicalModel
    meta: ArtifactMeta

    @classmethod
    def load(cls, folder: Path) -> LexicalScorer:
        return cls(cls.load_model(folder), read_meta(folder))

    @staticmethod
    def load_model(folder: Path) -> Any:
        from selection.distill.lexical import LexicalModel

        return LexicalModel.load(folder)

    @property
    def threshold(self) -> float | None:
        return float(self.model.threshold)

    def predict_samples(self, samples: Sequence[Sample], batch_size: int = 64) -> np.ndarray:
        from selection.distill.lexical import lexical_input

        return self.model.predict([lexical_input(s) for s in samples])


class StackedScorer(LexicalScorer):
    """The stacked judge (artifact kind `stacked`): (n, 4) S, R, P(discard) and its discard decision."""

    @staticmethod
    def load_model(folder: Path) -> Any:
        from selection.distill.stacked import StackedModel

        return StackedModel.load(folder)

    @property
    def threshold(self) -> float | None:
        return None  # the decision is the fourth column


class EmbedScorer(StackedScorer):
    """The embedding judge (artifact kind `embed`): as the stacked one, with the reply's MiniLM embedding."""

    @staticmethod
    def load_model(folder: Path) -> Any:
        from selection.distill.embed import EmbedModel

        return EmbedModel.load(folder)


class FinetuneScorer(StackedScorer):
    """The fine-tuned cross-encoder judge (artifact kind `finetune`): outputs as the stacked judge's."""

    @staticmethod
    def load_model(folder: Path) -> Any:
        from selection.distill.finetune import FinetuneModel

        return FinetuneModel.load(folder)


class XencStackedScorer(StackedScorer):
    """The xenc-stacked judge (artifact kind `xenc-stacked`): the stacked judge over the lexical ridge and the
    fine-tuned cross-encoder (read from its own artifact)."""

    @staticmethod
    def load_model(folder: Path) -> Any:
        from selection.distill.xenc_stack import XencStackedModel

        return XencStackedModel.load(folder)


Scorer = DistilledScorer | LexicalScorer | StackedScorer | EmbedScorer | FinetuneScorer | XencStackedScorer


def load_scorer(folder: Path) -> Scorer:
    """The scorer of an artifact of any kind (`config.kind`: `lexical`, `stacked`, `embed`, `finetune`,
    `xenc-stacked`, else the cross-encoder)."""
    kind = read_meta(folder).config.get("kind")
    if kind == "lexical":
        return LexicalScorer.load(folder)
    if kind == "stacked":
        return StackedScorer.load(folder)
    if kind == "embed":
        return EmbedScorer.load(folder)
    if kind == "finetune":
        return FinetuneScorer.load(folder)
    if kind == "xenc-stacked":
        return XencStackedScorer.load(folder)
    return DistilledScorer.load(folder)
