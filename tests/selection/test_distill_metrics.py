"""Pure parts of the distilled judge: the bucket rule, agreement metrics, the split by conversation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selection.distill.encoder import soft_targets
from selection.distill.fit_cli import format_discard_kinds
from selection.distill.labels import LabeledPair, label_set_hash
from selection.distill.metrics import (
    agreement,
    bucket_confusion,
    buckets,
    discard_kinds,
)
from selection.distill.splits import split_by_conversation


def test_buckets_follow_the_papers_rule() -> None:
    s = np.array([8.0, 8.0, 3.0, 5.0, 9.0])
    r = np.array([3.0, 7.0, 7.0, 5.0, 5.0])
    assert list(buckets(s, r)) == ["sensibility", "rationality", "rationality", "discard", "discard"]


def test_discard_kinds_separate_the_rules_gap_from_low_scores() -> None:
    true = np.array([[8, 5], [9, 5], [2, 3], [3, 5], [8, 2], [4, 8]], dtype=float)
    decided = np.array([True, False, False, False, True, False])
    kinds = discard_kinds(true, decided)
    assert (kinds["discards"], kinds["at_gap"], kinds["scored_low"]) == (4, 3, 1)
    assert kinds["at_gap_recall"] == pytest.approx(1 / 3) and kinds["scored_low_recall"] == 0.0
    assert "3 judged R exactly at the threshold" in format_discard_kinds(kinds)
    assert "recall" not in format_discard_kinds(discard_kinds(true))


def test_agreement_of_a_perfect_prediction() -> None:
    true = np.array([[8, 2], [3, 8], [5, 5], [9, 4], [2, 9]], dtype=float)
    metrics = agreement(true.copy(), true)
    assert metrics["spearman_s"] == pytest.approx(1.0) and metrics["pearson_r"] == pytest.approx(1.0)
    assert metrics["bucket_accuracy"] == 1.0 and metrics["bucket_macro_f1"] == 1.0
    assert bucket_confusion(true, true).trace() == 5


def _pair(conv: str, i: int) -> LabeledPair:
    return LabeledPair(conv=conv, context=(f"turn {i}",), response="ok", sensibility=5.0, rationality=i % 10)


def test_split_keeps_every_conversation_on_one_side_and_is_seeded() -> None:
    pairs = [_pair(f"conv{i // 3}", i) for i in range(300)]
    train, held = split_by_conversation(pairs, 0.2, seed=0)
    assert sorted(train + held) == list(range(300))
    assert not {pairs[i].conv for i in train} & {pairs[i].conv for i in held}
    assert 55 <= len(held) <= 66
    assert split_by_conversation(list(reversed(pairs)), 0.2, seed=0)[1] != held  # indexes move with order
    assert {pairs[i].conv for i in held} == {pairs[::-1][i].conv for i in
                                              split_by_conversation(pairs[::-1], 0.2, seed=0)[1]}
    assert split_by_conversation(pairs, 0.2, seed=1)[1] != held
    assert label_set_hash(pairs) != label_set_hash(pairs[1:])


def test_soft_targets_are_distributions_centred_on_the_score() -> None:
    dist = soft_targets(torch.tensor([[2.0, 9.0]]), sigma=1.0)
    assert torch.allclose(dist.sum(-1), torch.ones(1, 2))
    assert dist[0, 0].argmax() == 2 and dist[0, 1].argmax() == 9
