"""`empathy eval`: greedy replies on a test split through vLLM, scored with the paper's metrics.

`empathy eval --model base|full|sensibility|rationality|routed|blend:0.5 --split test [--limit N] [--url URL]`
writes `<data_dir>/eval/<model>-<split>-n<N>.json`; `empathy eval table [--compare A:B ...]` prints every run
as markdown, each cell with its 95% bootstrap interval, and paired differences between two models.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--model", default="routed",
                        help="base | full | sensibility | rationality | routed | blend:<weight>; several "
                        "comma-separated share one engine and the same samples")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--limit", type=int, help="evaluate the first N samples of the split")
    parser.add_argument("--url", help="a running vLLM server with the adapters (default: start one)")
    parser.add_argument("--judge", help="also score the replies with this judge spec (e.g. distilled:NAME)")
    parser.add_argument("--max-tokens", type=int, help="max new tokens per reply (EMPATHY_EVAL_MAX_TOKENS)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = list(argv or [])
    if args_list[:1] == ["table"]:
        return table_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    from empathy.logs import setup_logging
    from empathy.settings import get_settings
    from training.evaluation.run import run_evals

    settings = get_settings(data_dir=args.data_dir, eval_max_tokens=args.max_tokens)
    setup_logging(settings.log_level)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    for path in run_evals(settings, models, args.split, args.limit, args.url, args.judge):
        print(f"wrote {path}")
    return 0


def table_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="empathy eval table",
        description="all eval runs as a markdown table, each cell with its 95%% bootstrap interval; "
        "--compare A:B adds paired differences (A minus B on their common samples)")
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--split", choices=["train", "valid", "test"], help="only runs on this split")
    parser.add_argument("--compare", action="append", default=[], metavar="A:B",
                        help="paired difference of two models, e.g. sensibility:full (repeatable)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    from empathy.settings import get_settings
    from training.evaluation.run import eval_dir, load_runs
    from training.evaluation.table import parse_pair, render_comparisons, render_table

    settings = get_settings(data_dir=args.data_dir)
    runs = [r for r in load_runs(settings.data_dir) if args.split in (None, r.get("split"))]
    if not runs:
        print(f"no evaluation runs in {eval_dir(settings.data_dir)}; run `empathy eval --model ...` first.")
        return 1
    try:
        pairs = [parse_pair(spec) for spec in args.compare]
        print(render_table(runs, args.resamples, args.seed))
        if pairs:
            print()
            print(render_comparisons(runs, pairs, args.resamples, args.seed))
    except ValueError as exc:
        print(f"empathy eval table: {exc}")
        return 2
    return 0
