"""`empathy select score --split train --judge openai --judge-url URL --judge-model NAME [--limit N]`.

Resumable: what the store already holds for this judge and version is skipped, every result is written as
it arrives, so a killed run is continued by running the same command again.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from selection.commands.common import add_corpus_args, load_split, open_store, settings_from

if TYPE_CHECKING:
    from empathy.settings import Settings


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


def score_split(settings: Settings, split: str, judge: str, limit: int | None = None, progress: bool = True
                ) -> dict[str, Any]:
    """Score the samples of `split` (its first `limit`) with the judge `judge` (a --judge spec) into the
    store; resumable: what the store holds for this judge and version is not asked again. The run's
    summary."""
    import asyncio

    return asyncio.run(_score(settings, split, judge, limit, progress))


async def _score(settings: Settings, split: str, judge: str, limit: int | None, progress: bool
                 ) -> dict[str, Any]:
    from selection.judges import make_judge
    from selection.scoring import run_scoring

    samples = load_split(settings, split).samples
    if limit is not None:
        samples = samples[: max(0, limit)]
    store = open_store(settings)
    scorer = make_judge(judge, settings)
    try:
        summary = await run_scoring(scorer, samples, store, split=split, progress=progress)
    finally:
        await scorer.aclose()
    return summary.to_json()


def summary_text(result: dict[str, Any]) -> str:
    lines = [f"judge {result['judge_id']} ({result['version']}): {result['total']} samples, "
             f"{result['skipped']} already stored, asked {result['asked']}: {result['ok']} ok, "
             f"{result['failed']} failed"]
    return "\n".join(lines + [f"  failed {failure}" for failure in result["failures"]])


def main(argv: list[str] | None = None) -> int:
    from empathy.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging("INFO")
    settings = settings_from(args, judge_url=args.judge_url, judge_model=args.judge_model,
                             judge_api_key=args.judge_api_key, judge_concurrency=args.concurrency)
    result = score_split(settings, args.split, args.judge, args.limit, progress=not args.no_progress)
    print(json.dumps(result, indent=2) if args.json else summary_text(result))
    return 0
