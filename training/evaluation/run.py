"""One evaluation run: generate -> metrics -> judge -> `<data_dir>/eval/<run>.json` (the table: table.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empathy.errors import DataError
from empathy.layout import MOE_NAME, Layout
from empathy.settings import Settings
from selection.sample import Sample, make_sample
from training.evaluation.metrics import all_metrics

log = logging.getLogger("empathy.eval")


def run_name(label: str, split: str, n: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{label}-{split}-n{n}")


def eval_samples(settings: Settings, split: str, limit: int | None) -> list[Sample]:
    """The first `limit` samples of the split in corpus order (the same samples for every model)."""
    from selection.corpus import load_corpus

    samples = load_corpus(settings, split).samples
    if not samples:
        raise DataError(f"split {split!r} of {settings.corpus_path} has no samples to evaluate.")
    return samples[:limit] if limit else samples


def judge_scores(spec: str, settings: Settings, samples: Sequence[Sample], replies: Sequence[str]
                 ) -> tuple[dict[str, float | int], list[tuple[float, float] | None]]:
    """Mean S and R of the generated replies under the judge `spec` (failed verdicts are left out), and each
    reply's (S, R) (None where the verdict failed), which the table's bootstrap intervals resample."""
    from selection.judges import make_judge

    judged = [make_sample(split=s.split, conv_id=s.conv_id, turn=s.turn, context=s.context, response=r,
                          emotion=s.emotion, situation=s.situation)
              for s, r in zip(samples, replies, strict=True)]
    judge = make_judge(spec, settings)

    async def score_all() -> list[Any]:
        size = max(1, judge.batch_size)
        try:
            batches = [judged[i:i + size] for i in range(0, len(judged), size)]
            return [score for batch in batches for score in await judge.score(batch)]
        finally:
            await judge.aclose()

    per_sample = [(float(s.sensibility), float(s.rationality)) if s.ok else None
                  for s in asyncio.run(score_all())]
    ok = [v for v in per_sample if v is not None]
    if not ok:
        return {"judge_n": 0}, per_sample
    return {"judge_s": sum(v[0] for v in ok) / len(ok), "judge_r": sum(v[1] for v in ok) / len(ok),
            "judge_n": len(ok)}, per_sample


def write_run(data_dir: Path, name: str, body: dict[str, Any]) -> Path:
    folder = Layout(data_dir).eval
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1, ensure_ascii=False))
    tmp.replace(path)
    return path


@dataclass
class Planned:
    """One model's run before generation: who answers each sample."""

    label: str
    served: list[str]
    weights: list[float]


def plan_run(settings: Settings, model: str, contexts: Sequence[Sequence[dict[str, str]]]) -> Planned:
    from training.evaluation.generate import parse_model, routed_models

    spec = parse_model(model, settings.data_dir)
    if spec.served is None:
        served, weights = routed_models(settings.data_dir, contexts)
        return Planned(spec.label, served, weights)
    return Planned(spec.label, [spec.served] * len(contexts), [])


def run_evals(settings: Settings, models: Sequence[str], split: str, limit: int | None, url: str | None,
              judge: str | None = None) -> list[Path]:
    """Evaluate several models on the same samples; writes one JSON per model and returns the paths.

    The base model, experts, blends and router share ONE engine (their requests are batched together);
    `moe` has an engine of its own (`url` if it lists `empathy-moe`, e.g. the gateway), started after the
    first has stopped, so one engine runs at a time."""
    from training.engine import engine_url
    from training.moe.serving import moe_engine_url

    samples = eval_samples(settings, split, limit)
    contexts = [[{"role": m.role, "content": m.content} for m in s.context] for s in samples]
    plans = [plan_run(settings, model, contexts) for model in models]  # bad --model fails before any work
    lora_plans = [p for p in plans if MOE_NAME not in p.served]
    moe_plans = [p for p in plans if MOE_NAME in p.served]
    results: dict[int, tuple[list[str], float]] = {}
    if lora_plans:
        modules, rank = engine_modules(settings.data_dir, {name for p in lora_plans for name in p.served})
        with engine_url(settings, url, modules, rank, "vllm-eval") as base_url:
            results.update(generate_plans(settings, base_url, lora_plans, contexts))
    if moe_plans:
        with moe_engine_url(settings, url) as base_url:
            results.update(generate_plans(settings, base_url, moe_plans, contexts))
    return [finish_run(settings, plan, samples, *results[id(plan)], split, judge) for plan in plans]


def generate_plans(settings: Settings, base_url: str, plans: Sequence[Planned],
                   contexts: Sequence[Sequence[dict[str, str]]]) -> dict[int, tuple[list[str], float]]:
    """Replies of every plan from the server at `base_url`, all plans at once; id(plan) -> (replies,
    generation seconds)."""
    from openai import OpenAI

    from training.evaluation.generate import generate

    # A loaded CPU engine can take many minutes per reply; a timed-out request retried is work done twice.
    client = OpenAI(base_url=base_url, api_key="EMPTY", timeout=3600, max_retries=0)

    def timed(plan: Planned) -> tuple[list[str], float]:
        started = time.monotonic()
        replies = generate(client, plan.served, contexts, settings.eval_max_tokens, settings.eval_concurrency)
        return replies, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        return {id(plan): result for plan, result in zip(plans, pool.map(timed, plans), strict=True)}


def finish_run(settings: Settings, plan: Planned, samples: Sequence[Sample], replies: Sequence[str],
               seconds: float, split: str, judge: str | None) -> Path:
    metrics: dict[str, Any] = all_metrics(replies, [s.response for s in samples])
    verdicts: list[tuple[float, float] | None] = [None] * len(samples)
    if judge:
        means, verdicts = judge_scores(judge, settings, samples, replies)
        metrics.update(means)
    outputs = [{"id": s.id, "reply": r, "reference": s.response, "model": m,
                **({"judge_s": v[0], "judge_r": v[1]} if v is not None else {})}
               for s, r, m, v in zip(samples, replies, plan.served, verdicts, strict=True)]
    body = {"model": plan.label, "split": split, "n": len(samples), "metrics": metrics,
            "generation_seconds": round(seconds, 1), "max_tokens": settings.eval_max_tokens, "judge": judge,
            "served": dict(Counter(plan.served)), "weights": dict(Counter(f"{w:g}" for w in plan.weights)),
            "outputs": outputs}
    return write_run(settings.data_dir, run_name(plan.label, split, len(samples)), body)


def engine_modules(data_dir: Path, served: set[str]) -> tuple[dict[str, str], int]:
    """LoRA folders for an engine started by `empathy eval`: the requested names among experts and blends."""
    from training.router.grid import EXPERT_NAMES

    layout = Layout(data_dir)
    modules = {name: str(layout.expert(subset).resolve()) for subset, name in EXPERT_NAMES.items()}
    rank = 16
    index = layout.read_blends()
    if index is not None:
        modules.update(index.paths())
        rank = index.rank or rank
    return {name: path for name, path in modules.items() if name in served}, rank


def load_runs(data_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(Layout(data_dir).eval.glob("*.json")):
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("skipping %s: not valid JSON", path)
            continue
        if isinstance(body, dict) and "model" in body:  # not e.g. a MoE analysis
            runs.append({**body, "file": path.name})
    return runs
