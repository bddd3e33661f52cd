"""The router's NLL table on disk, filled chunk by chunk: an interrupted `empathy train router` resumes, and a
refit with other settings (temperature, L2, hold-out) re-scores nothing.

Rows are keyed by sample id and the table by the grid's adapter names, which carry the weight and a hash of
both experts: new experts mean new names, hence a fresh table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CACHE_FILE = "nll_cache.npz"


def load_cache(folder: Path, adapter_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows scored earlier for exactly this grid (an empty dict for another grid or no file)."""
    path = folder / CACHE_FILE
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        if [str(a) for a in data["adapters"]] != list(adapter_names):
            return {}
        return {str(sid): row.copy() for sid, row in zip(data["sample_ids"], data["nll"], strict=True)}


def save_cache(folder: Path, adapter_names: Sequence[str], rows: dict[str, np.ndarray]) -> None:
    """Write the table atomically (a kill mid-write keeps the previous version)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CACHE_FILE}.tmp.npz"
    ids = list(rows)
    nll = np.array([rows[i] for i in ids], dtype=np.float64).reshape(len(ids), len(adapter_names))
    np.savez(tmp, adapters=np.array(list(adapter_names)), sample_ids=np.array(ids), nll=nll)
    os.replace(tmp, folder / CACHE_FILE)
