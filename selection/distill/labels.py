"""Labelled pairs for the distilled judge: (context turns, response) -> the teacher judge's S and R.

Built from corpus samples joined to a teacher judge's scores (imported from a released file or read from
the store, see `selection/distill/sources.py`), so the judge learns on exactly the text it will score.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from selection.judges.base import Score
from selection.sample import Sample


@dataclass(frozen=True)
class LabeledPair:
    """One teacher verdict. `conv` groups pairs of one conversation (never split across train/held-out)."""

    conv: str
    context: tuple[str, ...]
    response: str
    sensibility: float
    rationality: float
    sample_id: str = ""


def label_set_hash(pairs: Sequence[LabeledPair]) -> str:
    """Content hash of a label set (texts and scores), stored in the artifact to tell what it learned."""
    digest = hashlib.sha256()
    for p in pairs:
        row = [p.conv, list(p.context), p.response, p.sensibility, p.rationality]
        digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:16]


def pairs_from_scores(samples: Sequence[Sample], scores: Mapping[str, Score]) -> list[LabeledPair]:
    """Samples that have an OK teacher score, in corpus order."""
    out = []
    for sample in samples:
        score = scores.get(sample.id)
        if score is None or not score.ok:
            continue
        out.append(LabeledPair(
            conv=sample.conv_id, context=tuple(m.content for m in sample.context), response=sample.response,
            sensibility=float(score.sensibility or 0.0), rationality=float(score.rationality or 0.0),
            sample_id=sample.id,
        ))
    return out
