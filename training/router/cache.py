"""The router's tables on disk, filled chunk by chunk: an interrupted `empathy train router` resumes, and a
refit with other settings (temperature, L2, hold-out) re-scores nothing.

Rows are keyed by sample id and each table by its column key. The NLL table's key is the grid's adapter
names, which carry the weight and a hash of both experts: new experts mean new names, hence a fresh table.
The context-feature table's key is the encoder and feature names (`FEATURES_FILE`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CACHE_FILE = "nll_cache.npz"
FEATURES_FILE = "context_features.npz"


def load_cache(folder: Path, key: Sequence[str], file: str = CACHE_FILE) -> dict[str, np.ndarray]:
    """Rows computed earlier under exactly this key (an empty dict for another key or no file)."""
    path = folder / file
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        if [str(a) for a in data["adapters"]] != list(key):
            return {}
        return {str(sid): row.copy() for sid, row in zip(data["sample_ids"], data["nll"], strict=True)}


def save_cache(folder: Path, key: Sequence[str], rows: dict[str, np.ndarray],
               file: str = CACHE_FILE, dtype: type = np.float64) -> None:
    """Write the table atomically (a kill mid-write keeps the previous version)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{file}.tmp.npz"
    ids = list(rows)
    width = len(next(iter(rows.values()))) if rows else 0
    table: np.ndarray = np.array([rows[i] for i in ids], dtype=dtype).reshape(len(ids), width)
    np.savez(tmp, adapters=np.array(list(key)), sample_ids=np.array(ids), nll=table)
    os.replace(tmp, folder / file)
