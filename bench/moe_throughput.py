"""Throughput of `empathy-moe` (the experts' token-level MoE, serve/moe_model.py) against the base model and
one LoRA expert, on the same vLLM build, in one run.

    .venv/bin/python bench/moe_throughput.py [--data-dir .empathy] [--moe DIR] [--expert DIR] [--rounds 3]

Starts two engines: the base model with the expert as a LoRA module (`base` and `expert`), and the MoE
artifact (a model of its own). Only one engine is asked at a time. Per round and model: 32 prompts x 64
generated tokens in one request (vLLM batches them), and one stream of 64 tokens. Prints generated tokens/s
(median over rounds; rounds alternate the model order) and the ratios moe/base and moe/expert.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from openai import OpenAI

from serve.engine import EngineProcess, EngineSpec

PROMPT = "I failed my exam today and I feel terrible. What should I do?"


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


def measure(clients: dict[str, tuple[OpenAI, str]], rounds: int, n: int, tokens: int
            ) -> dict[str, dict[str, float]]:
    runs: dict[str, dict[str, list[float]]] = {m: {"batched": [], "stream": []} for m in clients}
    for client, served in clients.values():  # warm-up: first requests pay one-time costs
        batched(client, served, 2, 4)
    for r in range(rounds):
        order = list(clients) if r % 2 == 0 else list(reversed(clients))
        for name in order:
            client, served = clients[name]
            runs[name]["batched"].append(batched(client, served, n, tokens))
            runs[name]["stream"].append(one_stream(client, served, tokens))
    return {m: {k: statistics.median(v) for k, v in r.items()} for m, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(".empathy"))
    parser.add_argument("--moe", type=Path, help="MoE artifact (default <data-dir>/moe)")
    parser.add_argument("--expert", type=Path, help="LoRA expert (default <data-dir>/experts/sensibility)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--enforce-eager", action="store_true", help="skip torch.compile in both engines")
    args = parser.parse_args()
    moe = args.moe or args.data_dir / "moe"
    expert = args.expert or args.data_dir / "experts" / "sensibility"
    section = json.loads((moe / "config.json").read_text())["empathy_moe"]
    rank = int(json.loads((expert / "adapter_config.json").read_text())["r"])
    extra = ("--enforce-eager",) if args.enforce_eager else ()
    specs = {
        "lora": EngineSpec(model=section["base_model"], served_name="base", port=8731, dtype=args.dtype,
                           lora_modules={"expert": str(expert)}, max_lora_rank=max(8, rank), max_loras=1,
                           max_model_len=1024, kvcache_gib=1, extra_args=extra),
        "moe": EngineSpec(model=str(moe), served_name="empathy-moe", port=8732, dtype=args.dtype,
                          max_model_len=1024, kvcache_gib=1, extra_args=extra),
    }
    engines = {k: EngineProcess(s, log_file=Path(f"/tmp/bench-moe-{k}.log")) for k, s in specs.items()}
    try:
        for engine in engines.values():
            engine.start()
        for engine in engines.values():
            engine.wait_healthy(timeout=3000)
        lora = OpenAI(base_url=f"{engines['lora'].url}/v1", api_key="EMPTY", timeout=1800)
        moe_client = OpenAI(base_url=f"{engines['moe'].url}/v1", api_key="EMPTY", timeout=1800)
        clients = {"base": (lora, "base"), "expert": (lora, "expert"), "moe": (moe_client, "empathy-moe")}
        result = measure(clients, args.rounds, args.batch, args.tokens)
    finally:
        for engine in engines.values():
            engine.stop()
    print(f"| model | {args.batch}x{args.tokens} batched tok/s | one stream tok/s |")
    print("|---|---|---|")
    for name, row in result.items():
        print(f"| {name} | {row['batched']:.1f} | {row['stream']:.1f} |")
    for mode in ("batched", "stream"):
        print(f"{mode}: moe/base {result['moe'][mode] / result['base'][mode]:.2f}x, "
              f"moe/expert {result['moe'][mode] / result['expert'][mode]:.2f}x")


if __name__ == "__main__":
    main()
