"""Judge benchmark: LLM-judge throughput (samples/s) at concurrency 1 and 8 against a vLLM server, and the
Spearman correlation between our judge and the paper's (ChatGPT) judge on validation samples.

    .venv/bin/python bench/judge_throughput.py                 # starts vLLM on the default model
    .venv/bin/python bench/judge_throughput.py --url http://127.0.0.1:8000 --limit 60

Without --url it starts its own engine (empathy.engine) on `.empathy/models/smollm2-135m-instruct`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="running OpenAI-compatible server (default: start vLLM)")
    parser.add_argument("--model", default="base", help="model name at the server")
    parser.add_argument("--base-model", type=Path, default=REPO / ".empathy/models/smollm2-135m-instruct")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared/data/empatheticdialogues")
    parser.add_argument("--paper-scores", type=Path,
                        default=REPO.parent / "shared/data/efficient-empathy/val_results.json")
    parser.add_argument("--limit", type=int, default=500, help="validation samples for the Spearman part")
    parser.add_argument("--throughput-samples", type=int, default=16,
                        help="samples per throughput measurement (x1 at concurrency 1, x2 at 8)")
    return parser.parse_args(argv)


async def timed_run(url: str, model: str, samples: Sequence, store, concurrency: int) -> dict[str, float]:
    from selection.judges.openai_judge import OpenAIJudge
    from selection.scoring import run_scoring

    judge = OpenAIJudge(url=url, model=model, concurrency=concurrency, max_retries=2, timeout=300)
    try:
        start = time.perf_counter()
        summary = await run_scoring(judge, samples, store, split="valid", progress=True)
        seconds = time.perf_counter() - start
    finally:
        await judge.aclose()
    return {"concurrency": concurrency, "samples": summary.asked, "ok": summary.ok,
            "seconds": round(seconds, 2),
            "samples_per_s": round(summary.asked / seconds, 3) if seconds else 0.0}


def spearman(store, samples: Sequence, paper: dict, judge_id: str, version: str) -> dict[str, float]:
    from scipy.stats import spearmanr

    ours = store.get(judge_id, version)
    ids = [s.id for s in samples if s.id in ours and s.id in paper]
    result: dict[str, float] = {"n": len(ids)}
    for name in ("sensibility", "rationality"):
        rho = spearmanr([getattr(ours[i], name) for i in ids], [getattr(paper[i], name) for i in ids])[0]
        result[name] = round(float(rho), 4)
    return result


async def bench(url: str, args: argparse.Namespace) -> dict[str, object]:
    from selection.corpus import make_loader
    from selection.importers import import_efficient_empathy
    from selection.judges.prompt import PROMPT_VERSION
    from selection.store import ScoreStore

    samples = make_loader("empatheticdialogues", args.corpus).load("valid").samples
    scores, _report = import_efficient_empathy(args.paper_scores, samples)
    paper = {score.sample_id: score for score in scores}
    chosen = [s for s in samples if s.id in paper][: args.limit]
    n = args.throughput_samples
    with tempfile.TemporaryDirectory() as tmp:
        store = ScoreStore.from_url(f"sqlite:///{tmp}/bench.db")
        runs = [await timed_run(url, args.model, chosen[:n], store, 1),
                await timed_run(url, args.model, chosen[n:3 * n], store, 8)]
        await timed_run(url, args.model, chosen, store, 8)  # the rest of the Spearman set
        rho = spearman(store, chosen, paper, f"openai:{args.model}", PROMPT_VERSION)
    return {"url": url, "model": args.model, "throughput": runs, "spearman_vs_paper": rho}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = parse_args()
    if args.url:
        print(json.dumps(asyncio.run(bench(args.url, args)), indent=2))
        return
    from empathy.engine import EngineProcess, EngineSpec

    spec = EngineSpec(model=str(args.base_model), served_name=args.model, port=free_port(), kvcache_gib=1)
    engine = EngineProcess(spec, log_file=Path(tempfile.gettempdir()) / "bench-judge-vllm.log")
    engine.start()
    try:
        engine.wait_healthy(timeout=900)
        print(json.dumps(asyncio.run(bench(engine.url, args)), indent=2))
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
