"""`empathy eval`: greedy replies on a test split through vLLM, scored with the paper's metrics.

`empathy eval --model base|full|sensibility|rationality|routed|blend:0.5|moe --split test [--limit N]
[--url URL]` writes `<data_dir>/eval/<model>-<split>-n<N>.json`; `empathy eval table [--compare A:B ...]`
prints every run as markdown, each cell with its 95% bootstrap interval, and paired differences between two
models.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--model", default="routed",
                        help="base | full | sensibility | rationality | routed | blend:<weight> | moe; "
                        "several comma-separated share one engine (moe: one of its own) and the same samples")
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
    if args_list[:1] == ["probes"]:
        return probes_main(args_list[1:])
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
    from empathy.layout import Layout
    from empathy.settings import get_settings
    from training.evaluation.run import load_runs
    from training.evaluation.table import parse_pair, render_comparisons, render_table

    settings = get_settings(data_dir=args.data_dir)
    runs = [r for r in load_runs(settings.data_dir) if args.split in (None, r.get("split"))]
    if not runs:
        print(f"no evaluation runs in {Layout(settings.data_dir).eval}; run `empathy eval --model ...` "
              "first.")
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


def probes_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="empathy eval probes",
        description="the router's expected sensibility weight on probe first turns (feeling vs practical, "
        "difference with a 95%% bootstrap interval); with --url, also each --models reply to some probes")
    parser.add_argument("--data-dir", help="artifact folder with router/ (EMPATHY_DATA_DIR)")
    parser.add_argument("--file", type=Path, help="probes JSONL (default: tests/data/probes.jsonl)")
    parser.add_argument("--url", help="an OpenAI-compatible endpoint, e.g. the gateway http://HOST:PORT/v1")
    parser.add_argument("--models", default="base,empathy-sensibility,empathy-rationality,empathy")
    parser.add_argument("--replies", type=int, default=5, help="probes to ask per group (with --url)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default: the server's)")
    args = parser.parse_args(argv)
    import json

    from empathy.layout import Layout
    from empathy.router import Router
    from empathy.settings import get_settings
    from training.evaluation.probes import DEFAULT_PROBES, read_probes, replies, router_report

    settings = get_settings(data_dir=args.data_dir)
    probes = read_probes(args.file or DEFAULT_PROBES)
    print(json.dumps(router_report(Router.load(Layout(settings.data_dir).router), probes), indent=2))
    if args.url:
        from openai import OpenAI

        picked = [p for kind in ("feeling", "practical")
                  for p in [q for q in probes if q.kind == kind][: args.replies]]
        params = {} if args.temperature is None else {"temperature": args.temperature}
        client = OpenAI(base_url=args.url, api_key=settings.api_keys[0] if settings.api_keys else "none")
        print(json.dumps(replies(client, args.models.split(","), picked, **params), indent=2))
    return 0
