"""`empathy select report --split valid --judge NAME [--json] [--out DIR]`: counts and fractions per subset,
the (S, R) heat-map and per-emotion fractions (PNGs), a JSON summary with `--json`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selection.commands.common import add_corpus_args
from selection.commands.split import add_rule_args

if TYPE_CHECKING:
    from empathy.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy select report",
                                     description="Report a judge's scores and the subsets they select.")
    add_rule_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the PNGs (default <data-dir>/reports/selection-<split>)")
    parser.add_argument("--json", action="store_true", help="print the full summary as JSON on stdout")
    parser.add_argument("--discard-list", type=Path, nargs="?", const=Path(""), default=None,
                        help="the paper's train discard list (train_discard.json; without a value "
                        "EMPATHY_DISTILL_DISCARD_PATH): print the overlap of our discards with it "
                        "(train split)")
    add_corpus_args(parser)
    return parser


def _overlap(settings: Settings, args: argparse.Namespace, items: Any) -> dict[str, float]:
    from selection.commands.common import load_split
    from selection.distill.discard_labels import load_discard_labels
    from selection.report import discard_overlap

    path = args.discard_list if str(args.discard_list) not in ("", ".") else settings.distill_discard_path
    samples = load_split(settings, args.split).samples
    labels = load_discard_labels(Path(path), samples)
    return discard_overlap(items, {s.id for s, discarded in zip(samples, labels, strict=True) if discarded})


def format_overlap(o: dict[str, float]) -> str:
    return (f"paper's discard list: {o['paper']} of {o['scored']} scored ({o['paper_fraction']:.2%}); ours "
            f"{o['ours']} ({o['our_fraction']:.2%}); both {o['both']}: we discard "
            f"{o['paper_discards_we_discard']:.1%} of the paper's discards, the paper discards "
            f"{o['our_discards_paper_discards']:.1%} of ours")


def main(argv: list[str] | None = None) -> int:
    from empathy.layout import Layout
    from selection.commands.selected import selected_from_args
    from selection.report import build_report

    args = build_parser().parse_args(argv)
    settings, chosen = selected_from_args(args)
    out = args.out or Layout(settings.data_dir).reports / f"selection-{args.split}"
    report = build_report(chosen.items, chosen.meta, out)
    if args.discard_list is not None:
        report["paper_discard_overlap"] = _overlap(settings, args, chosen.items)
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
    if "paper_discard_overlap" in report:
        print(format_overlap(report["paper_discard_overlap"]))
    return 0
