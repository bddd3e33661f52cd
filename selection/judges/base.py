"""The judge interface: anything that scores replies 1-10 for sensibility (S) and rationality (R).

Judges are registered by kind in `selection/judges/__init__.py` and built from a spec string such as
`openai` (the configured OpenAI-compatible endpoint), `distilled:NAME` or
`imported:efficient-empathy-chatgpt`.
The scoring runner (`selection/scoring.py`) owns concurrency, batching, the store and the progress bar;
a judge only turns samples into scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from selection.sample import Sample


@dataclass(frozen=True)
class Score:
    """One judge's verdict on one sample. A failed verdict keeps the raw text and no made-up number."""

    sample_id: str
    sensibility: float | None
    rationality: float | None
    raw: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.sensibility is not None and self.rationality is not None


class Judge(ABC):
    """Scores samples. `judge_id` and `version` (prompt version or artifact version) key the cache."""

    judge_id: str
    version: str
    # How many samples the runner hands to one `score` call, and how many calls run at once.
    batch_size: int = 1
    concurrency: int = 1

    @abstractmethod
    async def score(self, samples: Sequence[Sample]) -> list[Score]:
        """Score `samples` (one Score per sample, same order). Transient failures are retried inside;
        what still fails comes back as a Score with `error` set."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients or models."""
