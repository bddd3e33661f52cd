"""`empathy eval`: greedy replies on a test split through vLLM, scored with the paper's metrics.

`empathy eval --model base|full|sensibility|rationality|routed|blend:0.5 --split test [--limit N] [--url URL]`
writes `<data_dir>/eval/<model>-<split>-n<N>.json`; `empathy eval table` prints every run as markdown.
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
    parser = argparse.ArgumentParser(prog="empathy eval table",
                                     description="all eval runs as a markdown table")
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    args = parser.parse_args(argv)
    from empathy.settings import get_settings
    from training.evaluation.run import eval_dir, load_runs, render_table

    settings = get_settings(data_dir=args.data_dir)
    runs = load_runs(settings.data_dir)
    if not runs:
        print(f"no evaluation runs in {eval_dir(settings.data_dir)}; run `empathy eval --model ...` first.")
        return 1
    print(render_table(runs))
    return 0
