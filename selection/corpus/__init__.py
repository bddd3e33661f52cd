"""Corpus loaders: every corpus becomes a list of `Sample`s (one per reply to score) behind one interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from selection.corpus.base import CorpusLoader, LoadResult, Problem

if TYPE_CHECKING:
    from empathy.settings import Settings

__all__ = ["LOADERS", "CorpusLoader", "LoadResult", "Problem", "load_corpus", "make_loader"]


def _empatheticdialogues(path: Path) -> CorpusLoader:
    from selection.corpus.empatheticdialogues import EmpatheticDialoguesLoader

    return EmpatheticDialoguesLoader(path)


def _jsonl(path: Path) -> CorpusLoader:
    from selection.corpus.jsonl import JsonlChatLoader

    return JsonlChatLoader(path)


# corpus_format -> factory(path); a new corpus (ESConv, ...) is one more entry here.
LOADERS: dict[str, Callable[[Path], CorpusLoader]] = {
    "empatheticdialogues": _empatheticdialogues,
    "jsonl": _jsonl,
}


def make_loader(corpus_format: str, path: Path) -> CorpusLoader:
    if corpus_format not in LOADERS:
        from empathy.errors import ConfigError

        raise ConfigError(f"unknown corpus format {corpus_format!r} (EMPATHY_CORPUS_FORMAT); "
                          f"choose one of {sorted(LOADERS)}.")
    return LOADERS[corpus_format](Path(path))


def load_corpus(settings: Settings, split: str) -> LoadResult:
    """Load `split` of the corpus at `settings.corpus_path` with the loader of `settings.corpus_format`."""
    return make_loader(settings.corpus_format, settings.corpus_path).load(split)
