"""`empathy select score --split train --judge openai --judge-url URL --judge-model NAME [--limit N]`.

Resumable: what the store already holds for this judge and version is skipped, every result is written as
it arrives, so a killed run is continued by running the same command again.
"""

from __future__ import annotations

import argparse
import json

from selection.commands.common import add_corpus_args, load_split, open_store, settings_from


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy select score",
                                     description="Score a corpus split with a judge (resumable).")
    parser.add_argument("--judge", default="openai",
                        help="openai (the LLM judge at --judge-url) or distilled:NAME; default openai")
    parser.add_argument("--judge-url", default=None, help="OpenAI-compatible base URL incl. /v1 "
                        "(default EMPATHY_JUDGE_URL)")
    parser.add_argument("--judge-model", default=None,
                        help="model name at the endpoint (EMPATHY_JUDGE_MODEL)")
    parser.add_argument("--judge-api-key", default=None, help="API key (EMPATHY_JUDGE_API_KEY)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="requests in flight (EMPATHY_JUDGE_CONCURRENCY, default 8)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N samples of the split")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_corpus_args(parser)
    return parser


async def _run(args: argparse.Namespace) -> dict[str, object]:
    from selection.judges import make_judge
    from selection.scoring import run_scoring

    settings = settings_from(args, judge_url=args.judge_url, judge_model=args.judge_model,
                             judge_api_key=args.judge_api_key, judge_concurrency=args.concurrency)
    samples = load_split(settings, args.split).samples
    if args.limit is not None:
        samples = samples[: max(0, args.limit)]
    store = open_store(settings)
    judge = make_judge(args.judge, settings)
    try:
        summary = await run_scoring(judge, samples, store, split=args.split, progress=not args.no_progress)
    finally:
        await judge.aclose()
    return summary.to_json()


def main(argv: list[str] | None = None) -> int:
    import asyncio

    from empathy.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging("INFO")
    result = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"judge {result['judge_id']} ({result['version']}): {result['total']} samples, "
              f"{result['skipped']} already stored, asked {result['asked']}: {result['ok']} ok, "
              f"{result['failed']} failed")
        for failure in result["failures"]:  # type: ignore[attr-defined]
            print(f"  failed {failure}")
    return 0
