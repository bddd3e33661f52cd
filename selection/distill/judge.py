"""`distilled:NAME`: a fitted distilled judge behind the common `Judge` interface, so the scoring runner,
the store and its cache treat it like the LLM judge (keyed by judge id and artifact version)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from selection.distill.artifact import artifact_dir
from selection.distill.scorer import LexicalScorer, Scorer, load_scorer
from selection.judges.base import Judge, Score
from selection.rule import decision_json, decision_raw
from selection.sample import Sample

if TYPE_CHECKING:
    from empathy.settings import Settings


def _to_scores(samples: Sequence[Sample], values: Sequence[Sequence[float]],
               threshold: float | None = None) -> list[Score]:
    """Scores; the raw text carries the judge's keep/discard decision: a fourth column (the decision) or a
    third (P(discard)) with a threshold."""
    def raw(v: Sequence[float]) -> str:
        if len(v) > 3:
            return decision_json(v[2], v[3] >= 0.5)
        return decision_raw(v[2], threshold) if threshold is not None and len(v) > 2 else ""

    return [Score(s.id, round(float(v[0]), 4), round(float(v[1]), 4), raw=raw(v))
            for s, v in zip(samples, values, strict=True)]


class DistilledJudge(Judge):
    """Scores batches of samples with the cross-encoder; the torch work runs in a worker thread so the
    event loop (and the runner's progress bar and store writes) stay free."""

    concurrency = 1  # one torch call at a time: it already uses every configured core

    def __init__(self, scorer: Scorer, batch_size: int = 256,
                 inner_batch: int = 64) -> None:
        self.scorer = scorer
        self.judge_id = f"distilled:{scorer.meta.name}"
        self.version = scorer.meta.version
        # The runner hands over `batch_size` samples; inside they are sorted by length into smaller passes.
        self.batch_size = batch_size
        self.inner_batch = inner_batch

    @classmethod
    def load(cls, folder: Path, inner_batch: int = 64, threads: int = 0) -> DistilledJudge:
        if threads:
            import torch

            torch.set_num_threads(threads)
        scorer = load_scorer(folder)
        return cls(scorer, batch_size=max(1024, inner_batch * 16), inner_batch=inner_batch)

    @classmethod
    def from_settings(cls, name: str, settings: Settings) -> DistilledJudge:
        folder = artifact_dir(settings.data_dir, name)
        return cls.load(folder, settings.distill_batch_size, settings.distill_threads)

    async def score(self, samples: Sequence[Sample]) -> list[Score]:
        values = await asyncio.to_thread(self.scorer.predict_samples, samples, self.inner_batch)
        threshold = self.scorer.threshold if isinstance(self.scorer, LexicalScorer) else None  # stacked: None
        return _to_scores(samples, values.tolist(), threshold)
