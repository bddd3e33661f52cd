"""A lexical judge that selects like the paper: TF-IDF features of the reply and of the turn it answers,
ridge regression for S and R (learned from the paper's valid-split scores) and a logistic-regression
discard head (learned from the paper's keep/discard labels of the ~40k train listener turns), with its
threshold calibrated on train conversations held out from fitting.

Cheap on a CPU: fitting takes minutes, scoring 40k samples seconds. Artifact kind `lexical`:
`<data_dir>/judges/distilled/<NAME>/lexical.joblib` beside the usual `distilled.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from selection.distill.text import normalize
from selection.sample import Sample

MODEL_FILE = "lexical.joblib"
_M = TypeVar("_M")


@dataclass(frozen=True)
class LexicalInput:
    last_turn: str
    response: str
    turns: int


def lexical_input(sample: Sample) -> LexicalInput:
    last = sample.context[-1].content if sample.context else ""
    return LexicalInput(normalize(last), normalize(sample.response), len(sample.context))


def dense_features(rows: Sequence[LexicalInput]) -> np.ndarray:
    """Lengths of reply and last turn, whether the reply asks, the number of context turns."""
    return np.array([[np.log1p(len(x.response.split())), np.log1p(len(x.last_turn.split())),
                      float("?" in x.response), float(x.turns)] for x in rows], dtype=np.float64)


class LexicalFeatures:
    """Word 1-2 grams and character 2-4 grams of the reply, words of the last turn, a few lengths."""

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=100_000)
        self.chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=3, sublinear_tf=True,
                                     max_features=60_000)
        self.context = TfidfVectorizer(min_df=2, sublinear_tf=True, max_features=30_000)

    def fit(self, rows: Sequence[LexicalInput]) -> LexicalFeatures:
        self.words.fit([x.response for x in rows])
        self.chars.fit([x.response for x in rows])
        self.context.fit([x.last_turn for x in rows])
        return self

    def transform(self, rows: Sequence[LexicalInput]) -> Any:
        from scipy.sparse import csr_matrix, hstack

        responses = [x.response for x in rows]
        return hstack([self.words.transform(responses), self.chars.transform(responses),
                       self.context.transform([x.last_turn for x in rows]),
                       csr_matrix(dense_features(rows))]).tocsr()


def fit_discard_head(features: Any, labels: np.ndarray, c: float = 0.5) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(features, labels)


def fit_score_head(features: Any, targets: np.ndarray) -> Any:
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=(1.0, 3.0, 10.0, 30.0)).fit(features, targets)


@dataclass
class LexicalModel:
    features: LexicalFeatures
    scores: Any  # ridge: features -> (S, R)
    discard: Any  # logistic regression: features -> P(discard)
    threshold: float  # discard when P(discard) >= threshold
    r_shift: float = 0.0  # added to R so that R > 5 splits the kept ones in the paper's proportion

    def predict(self, rows: Sequence[LexicalInput]) -> np.ndarray:
        """(n, 3): S, R (0..10) and P(discard)."""
        if not rows:
            return np.zeros((0, 3), dtype=np.float32)
        x = self.features.transform(rows)
        sr = np.asarray(self.scores.predict(x), dtype=np.float64) + np.array([0.0, self.r_shift])
        sr = np.clip(sr, 0.0, 10.0)
        p = self.discard.predict_proba(x)[:, 1]
        return np.column_stack([sr, p]).astype(np.float32)

    def save(self, folder: Path) -> Path:
        return dump_model(self, folder / MODEL_FILE)

    @staticmethod
    def load(folder: Path) -> LexicalModel:
        return load_model(folder / MODEL_FILE, LexicalModel)


def dump_model(model: object, path: Path) -> Path:
    import joblib

    joblib.dump(model, path, compress=3)
    return path


def load_model(path: Path, cls: type[_M]) -> _M:
    """A model saved by `dump_model`; the wrong class is a clear error."""
    import joblib

    model = joblib.load(path)
    if not isinstance(model, cls):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}; re-fit the judge")
    return model
