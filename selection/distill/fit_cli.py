"""`empathy select distill fit [--labels PATH --format efficient-empathy] --split valid [--name NAME]`.

Without `--labels`, the labels are the store's scores of `--judge` (default the paper's imported judge).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from selection.commands.common import add_corpus_args, settings_from

METRIC_ROWS = (("spearman_s", "Spearman S"), ("pearson_s", "Pearson S"), ("spearman_r", "Spearman R"),
               ("pearson_r", "Pearson R"), ("bucket_accuracy", "bucket accuracy"),
               ("bucket_macro_f1", "bucket macro-F1"), ("majority_accuracy", "majority-class accuracy"),
               ("discard_precision", "discard precision"), ("discard_recall", "discard recall"),
               ("discard_f1", "discard F1"), ("discard_fraction", "discard fraction"),
               ("paper_discard_fraction", "paper discard fraction"), ("n", "held-out samples"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy select distill fit",
                                     description="Fit a distilled judge on a teacher judge's scores.")
    parser.add_argument("--labels", type=Path, default=None,
                        help="a released label file (e.g. val_results.json); default: the store's scores")
    parser.add_argument("--format", default="efficient-empathy",
                        help="format of --labels (efficient-empathy)")
    parser.add_argument("--judge", default="efficient-empathy-chatgpt",
                        help="teacher judge id in the store when --labels is not given")
    parser.add_argument("--name", default=None, help="artifact name (default EMPATHY_DISTILL_NAME)")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    parser.add_argument("--max-len", type=int, default=None, help="input tokens (EMPATHY_DISTILL_MAX_LEN)")
    parser.add_argument("--loss", choices=["dist", "mse"], default=None, help="EMPATHY_DISTILL_LOSS")
    parser.add_argument("--holdout", type=float, default=None, help="held-out fraction (by conversation)")
    parser.add_argument("--seed", type=int, default=None, help="seed of split and training")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (0 = default)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N labelled samples")
    parser.add_argument("--kind", choices=["stacked", "embed", "lexical", "finetune", "xenc-stacked",
                                                 "cross-encoder"],
                        default=None,
                        help="EMPATHY_DISTILL_KIND: stacked (second stage over the lexical judge --base, "
                        "bucket rule calibrated for macro-F1), embed (stacked + the reply's MiniLM "
                        "embedding), lexical (S/R + calibrated discard head), finetune (MiniLM fine-tuned "
                        "as a cross-encoder with S/R and discard heads), xenc-stacked (stacked + the "
                        "fine-tuned cross-encoder paper-xenc, on out-of-fold fine-tunes) or cross-encoder")
    parser.add_argument("--base", default=None,
                        help="the stacked judge's lexical base (EMPATHY_DISTILL_BASE_NAME; reused if fitted)")
    parser.add_argument("--discard", type=Path, default=None,
                        help="the paper's train discard list, for the lexical kind "
                        "(EMPATHY_DISTILL_DISCARD_PATH)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the MiniLM + ridge baseline")
    parser.add_argument("--json", action="store_true", help="print the artifact metadata as JSON")
    add_corpus_args(parser)
    return parser


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    names = list(metrics)
    lines = [f"{'held-out':<26}" + "".join(f"{n:>24}" for n in names)]
    for key, label in METRIC_ROWS:
        lines.append(f"{label:<26}" + "".join(f"{metrics[n].get(key, float('nan')):>24.3f}" for n in names))
    return "\n".join(lines)


def format_selection(extra: dict[str, Any]) -> str:
    """The bucket confusion matrix and fractions of a judge that decides discards (held-out valid)."""
    if "confusion" not in extra:
        return ""
    names = ("sensibility", "rationality", "discard")
    rule = f"; rule {extra['rule']}" if "rule" in extra else ""
    lines = [f"held-out valid: paper bucket (rows) x judge bucket (columns); discard threshold "
             f"P >= {extra['threshold']:.3f}{rule}", f"{'':<14}" + "".join(f"{n:>13}" for n in names)]
    lines += [f"{name:<14}" + "".join(f"{v:>13}" for v in row)
              for name, row in zip(names, extra["confusion"], strict=True)]
    lines.append(f"{'fractions':<14}" + "".join(f"{extra['fractions'][n]:>13.1%}" for n in names))
    lines.append(f"{'paper':<14}" + "".join(f"{extra['paper_fractions'][n]:>13.1%}" for n in names))
    return "\n".join(lines)


def format_discard_kinds(kinds: dict[str, float]) -> str:
    """One line of `discard_kinds`."""
    line = (f"the teacher's {kinds['discards']} held-out discards: {kinds['at_gap']} judged R exactly at the "
            f"threshold (discarded by the rule's gap, whatever S), {kinds['scored_low']} scored low")
    if "at_gap_recall" in kinds:
        line += (f"; this judge's recall: {kinds['at_gap_recall']:.3f} at the gap, "
                 f"{kinds['scored_low_recall']:.3f} of the low-scored")
    return line


def _print(meta: Any, folder: Path) -> None:
    print(f"distilled judge distilled:{meta.name} ({meta.version}) saved to {folder}")
    print(f"labels: {meta.label_source}, hash {meta.label_hash}; {meta.n_train} train / {meta.n_heldout} "
          f"held out (by conversation); fine-tuning {meta.train_seconds:.0f} s")
    print(format_metrics(meta.metrics))
    print(format_selection(meta.extra))


def main(argv: list[str] | None = None) -> int:
    from empathy.logs import setup_logging
    from selection.distill.artifact import artifact_dir
    from selection.distill.service import (
        fit_finetune_named,
        fit_lexical_named,
        fit_named,
        fit_stacked_named,
        fit_xenc_stacked_named,
        load_labels,
    )

    args = build_parser().parse_args(argv)
    settings = settings_from(args, distill_name=args.name, distill_epochs=args.epochs,
                             distill_max_len=args.max_len, distill_loss=args.loss,
                             distill_holdout=args.holdout, distill_seed=args.seed,
                             distill_threads=args.threads, distill_kind=args.kind,
                             distill_discard_path=args.discard,
                             distill_base_name=args.base)
    setup_logging(settings.log_level)
    labels = load_labels(settings, args.split, args.labels, args.format, args.judge)
    if settings.distill_kind in ("stacked", "embed"):
        meta = fit_stacked_named(settings, labels, settings.distill_name, settings.distill_kind)
    elif settings.distill_kind == "lexical":
        meta = fit_lexical_named(settings, labels, settings.distill_name)
    elif settings.distill_kind == "finetune":
        meta = fit_finetune_named(settings, labels, settings.distill_name)
    elif settings.distill_kind == "xenc-stacked":
        meta = fit_xenc_stacked_named(settings, labels, settings.distill_name)
    else:
        meta = fit_named(settings, labels, settings.distill_name, baseline=not args.no_baseline,
                         limit=args.limit)
    folder = artifact_dir(settings.data_dir, settings.distill_name)
    if args.json:
        print(json.dumps(meta.__dict__, indent=2))
    else:
        _print(meta, folder)
    return 0
