"""`empathy select split --split valid --judge efficient-empathy-chatgpt --out DIR [--json]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selection.commands.common import add_corpus_args


def add_rule_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge", required=True,
                        help="judge whose stored scores to use: efficient-empathy-chatgpt, openai:MODEL, "
                        "distilled:NAME, ... (as listed by the store)")
    parser.add_argument("--version", default=None, help="judge version (default: the latest stored)")
    parser.add_argument("--sensibility-threshold", type=float, default=None,
                        help="sensibility set: S > this (default EMPATHY_SENSIBILITY_THRESHOLD, paper 5)")
    parser.add_argument("--rationality-threshold", type=float, default=None,
                        help="rationality set: R > this; sensibility set: R < this (paper 5)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy select split",
                                     description="Apply the selection rule and write the subsets as JSONL.")
    add_rule_args(parser)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <data-dir>/subsets)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    add_corpus_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from selection.commands.selected import selected_from_args
    from selection.subsets import write_subsets

    args = build_parser().parse_args(argv)
    settings, chosen = selected_from_args(args)
    out = args.out or settings.data_dir / "subsets"
    manifest = write_subsets(out, chosen.items, chosen.meta)
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        counts, fractions = manifest["counts"], manifest["fractions"]
        print(f"{out}: " + ", ".join(f"{name} {counts[name]} ({fractions[name]:.1%})" for name in fractions)
              + f", full {counts['full']}")
    return 0
