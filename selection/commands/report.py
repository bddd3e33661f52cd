"""`empathy select report --split valid --judge NAME [--json] [--out DIR]`: counts and fractions per subset,
the (S, R) heat-map and per-emotion fractions (PNGs), a JSON summary with `--json`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selection.commands.common import add_corpus_args
from selection.commands.split import add_rule_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy select report",
                                     description="Report a judge's scores and the subsets they select.")
    add_rule_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the PNGs (default <data-dir>/reports/selection-<split>)")
    parser.add_argument("--json", action="store_true", help="print the full summary as JSON on stdout")
    add_corpus_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from selection.commands.selected import selected_from_args
    from selection.report import build_report

    args = build_parser().parse_args(argv)
    settings, chosen = selected_from_args(args)
    out = args.out or settings.data_dir / "reports" / f"selection-{args.split}"
    report = build_report(chosen.items, chosen.meta, out)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    counts, fractions = report["counts"], report["fractions"]
    print(f"judge {report['judge']} ({report['version']}) on {args.split}: {report['scored']} of "
          f"{report['samples']} samples scored; mean S {report['means']['sensibility']:.2f}, "
          f"mean R {report['means']['rationality']:.2f}")
    for name in ("sensibility", "rationality", "discard"):
        print(f"  {name:<12} {counts[name]:>7}  {fractions[name]:.1%}")
    print(f"  {'full':<12} {counts['full']:>7}")
    print(f"plots: {report['plots']['heatmap']}, {report['plots']['emotions']}")
    return 0
