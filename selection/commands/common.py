"""Flags and set-up shared by the `empathy select` subcommands."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from empathy.settings import Settings, get_settings
from selection.corpus import LoadResult, load_corpus
from selection.store import ScoreStore

log = logging.getLogger("empathy.selection")


def add_corpus_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default="valid", help="corpus split (train, valid, test); default valid")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="corpus folder (default: EMPATHY_CORPUS_PATH)")
    parser.add_argument("--corpus-format", default=None, choices=["empatheticdialogues", "jsonl"],
                        help="corpus loader (default: EMPATHY_CORPUS_FORMAT)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="artifact folder (default: EMPATHY_DATA_DIR)")
    parser.add_argument("--store-url", default=None,
                        help="SQLAlchemy URL of the scores store (default: <data-dir>/empathy.db)")


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    return get_settings(corpus_path=args.corpus, corpus_format=args.corpus_format, data_dir=args.data_dir,
                        store_url=args.store_url, **extra)


def open_store(settings: Settings) -> ScoreStore:
    return ScoreStore.from_url(settings.resolved_store_url())


def load_split(settings: Settings, split: str) -> LoadResult:
    """The split's samples; skipped rows are logged with file and line."""
    result = load_corpus(settings, split)
    if result.problems:
        log.warning("%s", result.summary())
    return result
