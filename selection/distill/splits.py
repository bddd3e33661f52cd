"""Held-out split by conversation: no conversation has pairs on both sides."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from selection.distill.labels import LabeledPair


def _rank(conv: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{conv}".encode()).hexdigest()


def split_by_conversation(pairs: Sequence[LabeledPair], holdout: float, seed: int
                          ) -> tuple[list[int], list[int]]:
    """Indexes (train, held_out). Conversations are ordered by a seeded hash, so the split is fixed for a
    seed and does not depend on the order of the label file; about `holdout` of the pairs are held out."""
    convs = sorted({p.conv for p in pairs}, key=lambda c: _rank(c, seed))
    sizes: dict[str, int] = {}
    for p in pairs:
        sizes[p.conv] = sizes.get(p.conv, 0) + 1
    held: set[str] = set()
    target, taken = holdout * len(pairs), 0
    for conv in convs:
        if taken >= target:
            break
        held.add(conv)
        taken += sizes[conv]
    train = [i for i, p in enumerate(pairs) if p.conv not in held]
    rest = [i for i, p in enumerate(pairs) if p.conv in held]
    return train, rest
