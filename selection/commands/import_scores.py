"""`empathy select import-scores --format efficient-empathy PATH --split valid`: import released scores
as a judge of their own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selection.commands.common import add_corpus_args, load_split, open_store, settings_from


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy select import-scores",
                                     description="Import judge scores released with a paper as a judge.")
    parser.add_argument("path", type=Path, help="the released scores file, e.g. val_results.json")
    parser.add_argument("--format", default="efficient-empathy", help="file format (efficient-empathy)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_corpus_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from empathy.errors import DataError
    from empathy.logs import setup_logging
    from selection.importers import IMPORTERS, JUDGE_IDS

    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    setup_logging(settings.log_level)
    if args.format not in IMPORTERS:
        raise DataError(f"unknown scores format {args.format!r} (--format); known: {sorted(IMPORTERS)}.")
    samples = load_split(settings, args.split).samples
    scores, report = IMPORTERS[args.format](args.path, samples)
    judge_id, version = JUDGE_IDS[args.format]
    open_store(settings).put_many(scores, judge_id, version, args.split)
    summary = {"judge": judge_id, "version": version, "split": args.split, "samples": len(samples),
               **report.to_json()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"imported {report.matched} of {report.items} items ({report.match_rate:.2%}) as judge "
              f"{judge_id} ({version}); unmatched {report.unmatched}, ambiguous {report.ambiguous}, "
              f"unparsable {report.unparsable}, duplicates {report.duplicates}")
        for example in report.examples:
            print(f"  {example}")
    return 0
