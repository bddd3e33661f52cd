"""Check vLLM's CPU LoRA path on mixed batches: does a request for the base model, batched together with
LoRA requests, still get the base model's output? And what does the fix cost base-only traffic?

    .venv/bin/python bench/lora_mixed_batch.py [--data-dir .empathy] [--max-loras 8]

Starts one engine with the experts and blends of `<data_dir>` as LoRA modules, twice: as vLLM is
(`VLLM_PLUGINS=none`) and with our plugin (serve/vllm_plugin.py, loaded by vLLM from its entry point). Each
time it asks every model the same question once alone (sequential) and three times concurrently, prints the
sum of the logprobs of 8 greedy reply tokens of each, and times base-only traffic.
Measured with vLLM 0.32 (CPU build) on the quick profile's artifacts (8-token logprob sums): as vLLM is,
base alone -4.39383, in a mixed batch -5.86250 (the value of the blend-1 adapter, in the last slot: the CPU
kernels index adapter weights with -1 for "no LoRA") or -5.02855; with our plugin -4.39384 both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from empathy.engine import EngineProcess, EngineSpec

TOLERANCE = 1e-3  # fp32 sums differ by ~1e-5 with the batch's composition; an adapter moves them by ~1
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "I failed my exam today and I feel terrible."}]


def reply_logprob(client: OpenAI, model: str) -> float:
    """Sum of the logprobs of 8 greedy reply tokens: the first from the prefill, the rest from decode steps
    (vLLM's CPU LoRA path runs other code for the two)."""
    reply = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8, temperature=0,
                                           logprobs=True, extra_body={"ignore_eos": True})
    assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.content
    return round(sum(token.logprob for token in reply.choices[0].logprobs.content), 5)


def modules(data_dir: Path) -> dict[str, str]:
    out = {f"empathy-{e}": str(data_dir / "experts" / e) for e in ("sensibility", "rationality", "full")
           if (data_dir / "experts" / e / "adapter_config.json").is_file()}
    index = data_dir / "blends" / "index.json"
    if index.is_file():
        for row in json.loads(index.read_text()).get("blends", []):
            out[row["name"]] = row["path"]
    return out


def base_throughput(client: OpenAI, requests: int = 32, concurrency: int = 8) -> float:
    """Generated tokens/s of base-only traffic (what a fix may cost when no expert is asked for)."""
    def one(_: int) -> int:
        reply = client.chat.completions.create(model="base", messages=MESSAGES, max_tokens=32, temperature=0,
                                               extra_body={"ignore_eos": True})
        return reply.usage.completion_tokens if reply.usage else 0

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, range(requests)))
    return tokens / (time.perf_counter() - started)


def run(spec: EngineSpec, log_file: Path, plugin: bool) -> tuple[int, float]:
    """Print alone vs mixed for every model on one engine; return how many models differ and the base-only
    throughput."""
    if plugin:
        os.environ.pop("VLLM_PLUGINS", None)
    else:
        os.environ["VLLM_PLUGINS"] = "none"  # an allow-list naming no plugin: vLLM as it is
    engine = EngineProcess(spec, log_file=log_file)
    engine.start()
    try:
        engine.wait_healthy(timeout=600)
        client = OpenAI(base_url=f"{engine.url}/v1", api_key="EMPTY")
        names = ["base", *spec.lora_modules]
        # Adapters first: base is then asked alone with every slot in use.
        alone = {m: reply_logprob(client, m) for m in [*spec.lora_modules, "base"]}
        with ThreadPoolExecutor(3 * len(names)) as pool:
            mixed = list(pool.map(lambda m: (m, reply_logprob(client, m)), names * 3))
        print(f"\n{'with our plugin' if plugin else 'vLLM as is'}")
        print(f"{'model':32} {'alone':>10} {'in a mixed batch':>18}")
        wrong = 0
        for m in names:
            seen = sorted({lp for n, lp in mixed if n == m})
            differs = max(abs(v - alone[m]) for v in seen) > TOLERANCE
            wrong += differs
            flag = "   <-- differs" if differs else ""
            print(f"{m:32} {alone[m]:10.5f} {', '.join(f'{v:.5f}' for v in seen):>18}{flag}")
        base_throughput(client, requests=8)  # warm-up
        rate = base_throughput(client)
        print(f"base-only traffic, 32 requests x 32 tokens at concurrency 8: {rate:.1f} tokens/s")
        return wrong, rate
    finally:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(".empathy"))
    parser.add_argument("--max-loras", type=int, default=8)
    parser.add_argument("--port", type=int, default=8055)
    args = parser.parse_args()
    mods = modules(args.data_dir)
    spec = EngineSpec(model=str(args.data_dir / "models" / "smollm2-135m-instruct"), served_name="base",
                      port=args.port, lora_modules=mods, max_lora_rank=16, max_loras=args.max_loras,
                      max_model_len=1024, kvcache_gib=1, dtype="float32")
    log_file = args.data_dir / "logs" / "vllm-mixed-batch.log"
    (wrong_raw, rate_raw), (wrong_fixed, rate_fixed) = (run(spec, log_file, p) for p in (False, True))
    print(f"\nmodels whose mixed-batch output differs from alone: vLLM as is {wrong_raw}, "
          f"with our plugin {wrong_fixed}")
    print(f"base-only throughput: vLLM as is {rate_raw:.1f} tokens/s, with our plugin {rate_fixed:.1f} "
          f"tokens/s (ratio {rate_fixed / rate_raw:.2f})")


if __name__ == "__main__":
    main()
