"""Throughput of `empathy-moe` (the experts' token-level MoE, serve/moe_model.py) against the base model and
one LoRA expert, on the same vLLM build, in one run, robust to a shared machine's load.

    nice -n 10 .venv/bin/python bench/moe_throughput.py [--data-dir .empathy] [--blocks 2] [--reps 2]

Two engines: A = the base model with the expert as a LoRA module (`base` and `expert`), B = the MoE artifact
(a model of its own). Only one runs at a time (memory): the run is a sequence of segments in ABBA order,
block after block (A B B A A B B A ...), consecutive segments of one engine sharing its start. Each segment
measures every model of its engine `--reps` times (after a warm-up): 32 prompts x 64 generated tokens in one
request (vLLM batches them) and one stream of 64 tokens, in generated tokens/s.

The ratios are paired: segments 1-2, 3-4, ... are adjacent in time (AB, BA, AB, ...), so each pair gives one
log ratio of the MoE's segment mean to the LoRA engine's; the ratio printed is exp(mean log ratio) with a 95%
t interval over the pairs. ABBA cancels a load that drifts linearly; the 1-minute load average is printed at
the start, per segment and at the end, so numbers are quoted with the load they were measured under.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from openai import OpenAI
from scipy import stats

from empathy.engine import EngineProcess, EngineSpec

PROMPT = "I failed my exam today and I feel terrible. What should I do?"
MODELS = {"A": ("base", "expert"), "B": ("moe",)}
SERVED = {"base": "base", "expert": "expert", "moe": "empathy-moe"}
MODES = ("batched", "stream")


def batched(client: OpenAI, model: str, n: int, tokens: int) -> float:
    started = time.perf_counter()
    reply = client.completions.create(model=model, prompt=[f"{PROMPT} ({i})" for i in range(n)],
                                      max_tokens=tokens, temperature=0,
                                      extra_body={"ignore_eos": True, "min_tokens": tokens})
    assert reply.usage is not None
    return reply.usage.completion_tokens / (time.perf_counter() - started)


def one_stream(client: OpenAI, model: str, tokens: int) -> float:
    started = time.perf_counter()
    count = 0
    extra = {"ignore_eos": True, "min_tokens": tokens}
    for chunk in client.completions.create(model=model, prompt=PROMPT, max_tokens=tokens, temperature=0,
                                           stream=True, extra_body=extra):
        count += bool(chunk.choices and chunk.choices[0].text)
    return count / (time.perf_counter() - started)


def abba(blocks: int) -> list[str]:
    """Segment order: A B B A per block."""
    return [e for _ in range(blocks) for e in "ABBA"]


def sessions(order: Sequence[str]) -> list[tuple[str, int]]:
    """Runs of one engine: (engine, number of consecutive segments), e.g. ABBA ABBA -> A1 B2 A2 B2 A1."""
    out: list[tuple[str, int]] = []
    for engine in order:
        if out and out[-1][0] == engine:
            out[-1] = (engine, out[-1][1] + 1)
        else:
            out.append((engine, 1))
    return out


@dataclass
class Segment:
    engine: str
    load: float  # 1-minute load average when the segment started
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (model, mode) -> tok/s

    def mean(self, model: str, mode: str) -> float:
        return statistics.fmean(self.values[(model, mode)])


def paired_ratio(pairs: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """exp(mean log(x / y)) over (x, y) pairs, with a 95% t interval (nan bounds for one pair)."""
    logs = [math.log(x / y) for x, y in pairs]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), math.nan, math.nan
    half = stats.t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def segment_pairs(segments: Sequence[Segment], model: str, mode: str) -> list[tuple[float, float]]:
    """(MoE segment mean, `model`'s segment mean) of each adjacent pair of segments (1-2, 3-4, ...)."""
    out = []
    for first, second in zip(segments[::2], segments[1::2], strict=True):
        a, b = (first, second) if first.engine == "A" else (second, first)
        out.append((b.mean("moe", mode), a.mean(model, mode)))
    return out


def measure_segment(engine: str, client: OpenAI, reps: int, n: int, tokens: int) -> Segment:
    segment = Segment(engine, os.getloadavg()[0])
    for rep in range(reps):
        models = MODELS[engine] if rep % 2 == 0 else tuple(reversed(MODELS[engine]))
        for model in models:
            served = SERVED[model]
            segment.values.setdefault((model, "batched"), []).append(batched(client, served, n, tokens))
            segment.values.setdefault((model, "stream"), []).append(one_stream(client, served, tokens))
    means = ", ".join(f"{m} {k} {statistics.fmean(v):.1f}" for (m, k), v in segment.values.items())
    print(f"segment {engine} (load {segment.load:.1f}): {means}", flush=True)
    return segment


def _measure(engine: str, reps: int, n: int, tokens: int, client: OpenAI) -> Segment:
    return measure_segment(engine, client, reps, n, tokens)


def run_session(spec: EngineSpec, log_file: Path, count: int, measure: Callable[[OpenAI], Segment]
                ) -> list[Segment]:
    """Start one engine, warm it up, measure `count` segments, stop it."""
    engine = EngineProcess(spec, log_file=log_file)
    engine.start()
    try:
        engine.wait_healthy(timeout=3000)
        client = OpenAI(base_url=f"{engine.url}/v1", api_key="EMPTY", timeout=1800)
        for model in (m for m, s in SERVED.items() if s in (spec.served_name, *spec.lora_modules)):
            batched(client, SERVED[model], 32, 4)  # first requests pay one-time costs (compilation)
            one_stream(client, SERVED[model], 4)
        return [measure(client) for _ in range(count)]
    finally:
        engine.stop()


def engine_specs(args: argparse.Namespace) -> dict[str, EngineSpec]:
    moe = args.moe or args.data_dir / "moe"
    expert = args.expert or args.data_dir / "experts" / "sensibility"
    section = json.loads((moe / "config.json").read_text())["empathy_moe"]
    rank = int(json.loads((expert / "adapter_config.json").read_text())["r"])
    extra = ("--enforce-eager",) if args.enforce_eager else ()
    return {
        "A": EngineSpec(model=section["base_model"], served_name="base", port=args.port, dtype=args.dtype,
                        lora_modules={"expert": str(expert)}, max_lora_rank=max(8, rank), max_loras=1,
                        max_model_len=1024, kvcache_gib=1, extra_args=extra),
        "B": EngineSpec(model=str(moe), served_name="empathy-moe", port=args.port, dtype=args.dtype,
                        max_model_len=1024, kvcache_gib=1, extra_args=extra),
    }


def report(segments: Sequence[Segment], args: argparse.Namespace) -> None:
    print(f"\n| model | {args.batch}x{args.tokens} batched tok/s (median of segments) | one stream tok/s |")
    print("|---|---|---|")
    for model in ("base", "expert", "moe"):
        cells = [statistics.median(s.mean(model, mode) for s in segments if (model, mode) in s.values)
                 for mode in MODES]
        print(f"| {model} | {cells[0]:.1f} | {cells[1]:.1f} |")
    n_pairs = len(segments) // 2
    print(f"\npaired ratios over {n_pairs} adjacent segment pairs (ABBA), 95% t interval:")
    for mode in MODES:
        for other in ("base", "expert"):
            ratio, low, high = paired_ratio(segment_pairs(segments, other, mode))
            print(f"{mode}: moe/{other} {ratio:.3f} [{low:.3f}, {high:.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(".empathy"))
    parser.add_argument("--moe", type=Path, help="MoE artifact (default <data-dir>/moe)")
    parser.add_argument("--expert", type=Path, help="LoRA expert (default <data-dir>/experts/sensibility)")
    parser.add_argument("--blocks", type=int, default=2, help="ABBA blocks (2 blocks: 4 paired segments)")
    parser.add_argument("--reps", type=int, default=2, help="measurements of each model per segment")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--enforce-eager", action="store_true", help="skip torch.compile in both engines")
    args = parser.parse_args()
    specs = engine_specs(args)
    started = os.getloadavg()
    print(f"load average at start (1, 5, 15 min): {started[0]:.2f} {started[1]:.2f} {started[2]:.2f}; "
          f"{os.cpu_count()} CPUs", flush=True)
    segments: list[Segment] = []
    for engine, count in sessions(abba(args.blocks)):
        measure = functools.partial(_measure, engine, args.reps, args.batch, args.tokens)
        segments += run_session(specs[engine], Path(f"/tmp/bench-moe-{engine}.log"), count, measure)
    report(segments, args)
    ended = os.getloadavg()
    print(f"load average at end (1, 5, 15 min): {ended[0]:.2f} {ended[1]:.2f} {ended[2]:.2f}")


if __name__ == "__main__":
    main()
