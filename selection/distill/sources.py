"""Where a distilled judge's labels come from: a released label file matched to the corpus, or the scores
of a judge already in the store. Either way the result is corpus samples with the teacher's S and R."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from empathy.errors import ConfigError, DataError
from selection.distill.labels import LabeledPair, pairs_from_scores
from selection.sample import Sample

if TYPE_CHECKING:
    from selection.store import ScoreStore


@dataclass(frozen=True)
class LabelSet:
    pairs: list[LabeledPair]
    source: str  # what the labels are, for the artifact and messages: a file or `store:<judge>@<version>`


def labels_from_file(path: Path, fmt: str, samples: Sequence[Sample], split: str) -> LabelSet:
    """Match a released label file (e.g. the paper's `val_results.json`) to the corpus split."""
    from selection.importers import IMPORTERS

    if fmt not in IMPORTERS:
        raise ConfigError(f"unknown label format {fmt!r} for {path} (--format); "
                          f"use one of {sorted(IMPORTERS)}")
    scores, report = IMPORTERS[fmt](Path(path), samples)
    pairs = pairs_from_scores(samples, {s.sample_id: s for s in scores})
    if not pairs:
        raise DataError(
            f"none of the {report.items} labels in {path} matches a sample of the corpus split {split!r} "
            f"({len(samples)} samples; e.g. {report.examples[:2]}); pass the split the labels were made on "
            "(--split) and the right corpus (--corpus)."
        )
    return LabelSet(pairs, f"{Path(path).resolve()} ({fmt}; {report.matched}/{report.items} matched)")


def labels_from_store(store: ScoreStore, judge_id: str, samples: Sequence[Sample], split: str) -> LabelSet:
    """The OK scores of `judge_id` (latest version) for the split's samples."""
    version = store.latest_version(judge_id)
    scores = store.get(judge_id, version) if version is not None else {}
    pairs = pairs_from_scores(samples, scores)
    if not pairs:
        raise DataError(
            f"the store has no scores of judge {judge_id!r} for the {len(samples)} samples of split "
            f"{split!r}; "
            "import them first (`empathy select import-scores PATH --split valid`) or pass "
            "--labels PATH --format efficient-empathy."
        )
    return LabelSet(pairs, f"store:{judge_id}@{version}")
