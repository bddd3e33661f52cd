"""`empathy select import-scores --format efficient-empathy PATH --split valid`: import released scores
as a judge of their own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selection.commands.common import add_corpus_args, load_split, open_store, settings_from

if TYPE_CHECKING:
    from empathy.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy select import-scores",
                                     description="Import judge scores released with a paper as a judge.")
    parser.add_argument("path", type=Path, help="the released scores file, e.g. val_results.json")
    parser.add_argument("--format", default="efficient-empathy", help="file format (efficient-empathy)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_corpus_args(parser)
    return parser


def import_scores(settings: Settings, path: Path, split: str, fmt: str = "efficient-empathy"
                  ) -> dict[str, Any]:
    """Store the released scores in `path` (format `fmt`) for the samples of `split` as their judge's
    scores; what was imported (judge, version, match report)."""
    from empathy.errors import DataError
    from selection.importers import IMPORTERS, JUDGE_IDS

    if fmt not in IMPORTERS:
        raise DataError(f"unknown scores format {fmt!r} (--format); known: {sorted(IMPORTERS)}.")
    samples = load_split(settings, split).samples
    scores, report = IMPORTERS[fmt](path, samples)
    judge_id, version = JUDGE_IDS[fmt]
    open_store(settings).put_many(scores, judge_id, version, split)
    return {"judge": judge_id, "version": version, "split": split, "samples": len(samples),
            **report.to_json()}


def summary_text(summary: dict[str, Any]) -> str:
    rate = summary["matched"] / summary["items"] if summary["items"] else 0.0
    lines = [f"imported {summary['matched']} of {summary['items']} items ({rate:.2%}) as judge "
             f"{summary['judge']} ({summary['version']}); unmatched {summary['unmatched']}, ambiguous "
             f"{summary['ambiguous']}, unparsable {summary['unparsable']}, "
             f"duplicates {summary['duplicates']}"]
    return "\n".join(lines + [f"  {example}" for example in summary["examples"]])


def main(argv: list[str] | None = None) -> int:
    from empathy.logs import setup_logging

    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    setup_logging(settings.log_level)
    summary = import_scores(settings, args.path, args.split, args.format)
    print(json.dumps(summary, indent=2) if args.json else summary_text(summary))
    return 0
