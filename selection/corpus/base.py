"""The loader interface: `load(split) -> LoadResult` (samples plus the rows that could not be used)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from empathy.errors import DataError
from selection.sample import Sample

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Problem:
    """A row a loader skipped: where it is and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class LoadResult:
    samples: list[Sample]
    problems: list[Problem] = field(default_factory=list)

    def summary(self, limit: int = 5) -> str:
        """One line per problem (the first `limit`), for logs and CLI output."""
        head = [f"{len(self.samples)} samples, {len(self.problems)} problem rows skipped"]
        head += [f"  {problem}" for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            head.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(head)


class CorpusLoader(Protocol):
    """Reads one corpus folder; `load` never crashes on a bad row, it reports it in `problems`."""

    path: Path

    def load(self, split: str) -> LoadResult: ...


def require_file(path: Path, folder: Path, layout: str) -> Path:
    """`path` if it is a non-empty file, else a DataError naming the setting and the expected layout."""
    if not folder.is_dir():
        raise DataError(
            f"corpus folder {folder} does not exist. Point EMPATHY_CORPUS_PATH (or --corpus) at {layout}"
        )
    if not path.is_file():
        raise DataError(
            f"corpus file {path} is missing. Point EMPATHY_CORPUS_PATH (or --corpus) at {layout}"
        )
    if path.stat().st_size == 0:
        raise DataError(f"corpus file {path} is empty; expected {layout}")
    return path
