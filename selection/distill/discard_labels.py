"""The paper's discarded train samples (`qwen_train_discard_v1.json`, released with Efficient-Empathy) as a
keep/discard label for every train listener turn.

An item's `id` is its index in the paper's scored train list: the listener turns of the train split in
corpus order, which is the order our EmpatheticDialogues loader yields samples in. The mapping is checked on
the text: the item's last assistant turn must equal the sample's reply after normalisation (the paper's
text is lower-cased and tokenised).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from empathy.errors import DataError
from selection.importers import normalise
from selection.sample import Sample

MAX_MISMATCH = 0.01  # tolerated share of items whose text differs (a malformed row or two)


def read_discard_items(path: Path) -> list[tuple[int, str]]:
    """(index, reply) of each discarded item."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"discard list {path} does not exist; set EMPATHY_DISTILL_DISCARD_PATH to the "
                        "paper's qwen_train_discard_v1.json (train_discard.json).") from exc
    try:
        return [(int(x["id"]), str(x["conversations"][-1]["value"])) for x in data]
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise DataError(f"{path} is not the paper's discard list: expected a JSON list of "
                        '{"conversations": [...], "id"} items') from exc


def discard_labels(items: Sequence[tuple[int, str]], samples: Sequence[Sample], source: str = ""
                   ) -> np.ndarray:
    """Boolean array over `samples` (the train split in corpus order): True = the paper discarded it."""
    labels = np.zeros(len(samples), dtype=bool)
    bad = [i for i, reply in items
           if not 0 <= i < len(samples) or normalise(samples[i].response) != normalise(reply)]
    if len(bad) > MAX_MISMATCH * max(len(items), 1):
        raise DataError(f"{len(bad)} of {len(items)} items of the discard list {source} do not match the "
                        f"reply of the train sample at their index (e.g. ids {bad[:3]}); the list is made on "
                        "the EmpatheticDialogues train split in its official order: check --corpus/--split.")
    skip = set(bad)
    labels[[i for i, _ in items if i not in skip]] = True
    return labels


def load_discard_labels(path: Path, samples: Sequence[Sample]) -> np.ndarray:
    return discard_labels(read_discard_items(path), samples, str(path))
