"""`empathy select split --split valid --judge efficient-empathy-chatgpt --out DIR [--json]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empathy.layout import Layout
from selection.commands.common import add_corpus_args

if TYPE_CHECKING:
    from empathy.settings import Settings


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


def write_split(settings: Settings, split: str, judge: str, version: str | None = None,
                out: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Apply the selection rule to `judge`'s stored scores of `split` and write the subsets as JSONL to
    `out` (default `<data_dir>/subsets`): the folder and its manifest."""
    from selection.commands.selected import select_split
    from selection.subsets import write_subsets

    chosen = select_split(settings, judge, version, split)
    folder = out or Layout(settings.data_dir).subsets
    return folder, write_subsets(folder, chosen.items, chosen.meta)


def manifest_text(folder: Path, manifest: dict[str, Any]) -> str:
    counts, fractions = manifest["counts"], manifest["fractions"]
    return (f"{folder}: " + ", ".join(f"{name} {counts[name]} ({fractions[name]:.1%})" for name in fractions)
            + f", full {counts['full']}")


def main(argv: list[str] | None = None) -> int:
    from selection.commands.selected import rule_settings

    args = build_parser().parse_args(argv)
    folder, manifest = write_split(rule_settings(args), args.split, args.judge, args.version, args.out)
    print(json.dumps(manifest, indent=2) if args.json else manifest_text(folder, manifest))
    return 0
