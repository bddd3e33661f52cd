"""The scoring runner: skip what is stored, ask the judge for the rest with bounded concurrency, and write
every result to the store as it arrives (a killed run loses nothing and re-asks nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from empathy.errors import EmpathyError
from selection.judges.base import Judge, Score
from selection.sample import Sample
from selection.store import ScoreStore


@dataclass
class ScoringSummary:
    judge_id: str
    version: str
    total: int = 0
    skipped: int = 0
    asked: int = 0
    ok: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)  # first few "sample_id: error"

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _batches(samples: Sequence[Sample], size: int) -> Iterator[Sequence[Sample]]:
    for start in range(0, len(samples), size):
        yield samples[start:start + size]


def todo_samples(samples: Sequence[Sample], store: ScoreStore, judge: Judge) -> tuple[list[Sample], int]:
    """Unique samples without an OK score of this judge, and how many unique ones were skipped."""
    unique = {sample.id: sample for sample in samples}
    missing = store.missing(list(unique), judge.judge_id, judge.version)
    return [unique[sample_id] for sample_id in missing], len(unique) - len(missing)


def _record(summary: ScoringSummary, scores: list[Score], bar: tqdm) -> None:
    for score in scores:
        if score.ok:
            summary.ok += 1
        else:
            summary.failed += 1
            if len(summary.failures) < 10:
                summary.failures.append(f"{score.sample_id}: {score.error}")
    bar.update(len(scores))
    bar.set_postfix(ok=summary.ok, failed=summary.failed, refresh=False)


async def run_scoring(judge: Judge, samples: Sequence[Sample], store: ScoreStore, split: str = "",
                      progress: bool = True) -> ScoringSummary:
    """Score every sample that has no OK score of `judge` yet; return what happened."""
    todo, skipped = todo_samples(samples, store, judge)
    summary = ScoringSummary(judge.judge_id, judge.version, total=len(todo) + skipped, skipped=skipped,
                             asked=len(todo))
    batches = _batches(todo, max(1, judge.batch_size))
    with tqdm(total=len(todo), desc=f"judge {judge.judge_id}", unit="sample", disable=not progress,
              dynamic_ncols=True) as bar:

        async def worker() -> None:
            # Workers share one iterator: `next` runs between awaits, so no batch is taken twice.
            for batch in batches:
                scores = await judge.score(batch)
                store.put_many(scores, judge.judge_id, judge.version, split)
                _record(summary, scores, bar)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, judge.concurrency)):
                    group.create_task(worker())
        except* EmpathyError as errors:
            raise errors.exceptions[0] from None
    return summary
