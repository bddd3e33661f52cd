"""Throughput of the distilled judge on the default artifact: items/s through the real scoring runner and a
throw-away SQLite store, and the projected time for the whole train split.

    .venv/bin/python bench/distilled_judge.py [--n 3000 | --n 0 (all)] [--threads 2] [--name paper-stacked]

Fits the default artifact first if it is missing (`ensure_default_judge`), which takes a while. The default
judge is the stacked one (a second stage over the lexical judge's TF-IDF S/R and discard head);
`--name paper-lexical` with EMPATHY_DISTILL_KIND=lexical measures the lexical judge, `--name paper-embed`
with EMPATHY_DISTILL_KIND=embed the stacked judge with the reply's MiniLM embedding (about 56 items per
CPU-second, against the stacked judge's 3,040: the encoder is the cost), `--name paper-minilm` with
EMPATHY_DISTILL_KIND=cross-encoder the cross-encoder. `--judge distilled:paper-xenc` scores a fitted judge by
name without the default-judge check (e.g. the fine-tuned cross-encoder of kind `finetune`, which is never
fitted here: `empathy select distill fit --kind finetune --name paper-xenc` took 32 min at load 3-6): 143.8
items per CPU-second with torch bf16 autocast, 2.3 min for the train split on an idle machine (the whole split
took 6 min 25 s wall at load ~4; bench/out/distilled_judge-20261207T012316-paper-xenc.json).
`--judge distilled:paper-xenc-stacked` (kind `xenc-stacked`: the stacked judge over the lexical ridge and
paper-xenc, `empathy select distill fit --kind xenc-stacked --name paper-xenc-stacked`): 130.0 items per
CPU-second, the whole train split in 3 min 31 s wall at load ~2
(bench/out/distilled_judge-20261207T040929-paper-xenc-stacked.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from empathy.settings import Settings
    from selection.scoring import ScoringSummary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="train samples (random, seeded; 0 = all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (EMPATHY_DISTILL_THREADS)")
    parser.add_argument("--batch", type=int, default=None, help="samples per forward pass")
    parser.add_argument("--name", default=None, help="artifact name (EMPATHY_DISTILL_NAME)")
    parser.add_argument("--judge", default=None,
                        help="a fitted judge to score, e.g. distilled:paper-xenc (default: the default "
                        "judge, fitted first if missing)")
    return parser.parse_args()


async def score(spec: str, settings: Settings, samples: list, db: Path
                ) -> tuple[float, float, ScoringSummary]:
    """(wall seconds, CPU seconds, summary) of scoring `samples`."""
    from selection.judges import make_judge
    from selection.scoring import run_scoring
    from selection.store import ScoreStore

    judge = make_judge(spec, settings)
    store = ScoreStore.from_url(f"sqlite:///{db}")
    start, cpu = time.perf_counter(), time.process_time()
    summary = await run_scoring(judge, samples, store, split="train")
    cpu_seconds = time.process_time() - cpu
    return time.perf_counter() - start, cpu_seconds, summary


def main() -> None:
    from empathy.settings import get_settings
    from selection.corpus import load_corpus
    from selection.distill import ensure_default_judge

    args = parse_args()
    settings = get_settings(distill_threads=args.threads, distill_batch_size=args.batch,
                            distill_name=args.name)
    spec = args.judge or ensure_default_judge(settings)
    train = load_corpus(settings, "train").samples
    samples = random.Random(0).sample(train, min(args.n, len(train))) if args.n else train
    with tempfile.TemporaryDirectory() as tmp:
        seconds, cpu_seconds, summary = asyncio.run(score(spec, settings, samples, Path(tmp) / "bench.db"))
    rate = len(samples) / seconds
    # Wall time depends on what else runs on the machine; CPU time says what the judge itself needs.
    per_cpu_s = len(samples) / cpu_seconds
    cores = os.cpu_count() or 1
    print(json.dumps({
        "judge": spec, "version": summary.version, "samples": len(samples), "ok": summary.ok,
        "seconds": round(seconds, 1), "items_per_s": round(rate, 1), "train_samples": len(train),
        "projected_train_minutes": round(len(train) / rate / 60, 1),
        "items_per_cpu_s": round(per_cpu_s, 1),
        "projected_train_minutes_idle_machine": round(len(train) / (per_cpu_s * cores) / 60, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "threads": settings.distill_threads or "torch default", "batch": settings.distill_batch_size,
    }, indent=2))


if __name__ == "__main__":
    main()
