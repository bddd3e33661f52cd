"""Check vLLM's CPU LoRA path on mixed batches: does a request for the base model, batched together with
LoRA requests, still get the base model's output?

    .venv/bin/python bench/lora_mixed_batch.py [--data-dir .empathy] [--max-loras 8]

Starts one engine with the experts and blends of `<data_dir>` as LoRA modules, twice: as vLLM serves the base
model (`base_as_lora=False`) and as empathy-router does (`base` served as an all-zero LoRA, see
serve/identity_lora.py). Each time it asks every model the same question once alone (sequential) and three
times concurrently, and prints the first token's logprob of each.
Measured with vLLM 0.32 (CPU build) before the fix: alone, base -2.19339 and the sensibility expert -2.06036;
concurrent, base gets -2.06036, i.e. the base rows of a mixed batch are computed WITH an adapter (the one in
the last slot: the CPU kernels index adapter weights with -1 for "no LoRA"). After the fix, on the quick
profile's artifacts: as vLLM serves it, base alone -2.19341 and in the mixed batch -2.38493 (the blend-1
adapter's value); served as the zero LoRA, -2.19341 both ways; 0 of 9 models differ.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import OpenAI

from serve.engine import EngineProcess, EngineSpec

MESSAGES = [{"role": "user", "content": "I failed my exam today and I feel terrible."}]


def first_logprob(client: OpenAI, model: str) -> float:
    reply = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=3, temperature=0,
                                           logprobs=True)
    assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.content
    return round(reply.choices[0].logprobs.content[0].logprob, 5)


def modules(data_dir: Path) -> dict[str, str]:
    out = {f"empathy-{e}": str(data_dir / "experts" / e) for e in ("sensibility", "rationality", "full")
           if (data_dir / "experts" / e / "adapter_config.json").is_file()}
    index = data_dir / "blends" / "index.json"
    if index.is_file():
        for row in json.loads(index.read_text()).get("blends", []):
            out[row["name"]] = row["path"]
    return out


def run(spec: EngineSpec, log_file: Path) -> int:
    """Print alone vs mixed for every model on one engine; return how many models differ."""
    engine = EngineProcess(spec, log_file=log_file)
    engine.start()
    try:
        engine.wait_healthy(timeout=600)
        client = OpenAI(base_url=f"{engine.url}/v1", api_key="EMPTY")
        names = ["base", *spec.lora_modules]
        alone = {m: first_logprob(client, m) for m in names}
        with ThreadPoolExecutor(3 * len(names)) as pool:
            mixed = list(pool.map(lambda m: (m, first_logprob(client, m)), names * 3))
        print(f"\nbase_as_lora={spec.base_as_lora}\n{'model':32} {'alone':>10} {'in a mixed batch':>18}")
        wrong = 0
        for m in names:
            seen = sorted({lp for n, lp in mixed if n == m})
            wrong += seen != [alone[m]]
            flag = "" if seen == [alone[m]] else "   <-- differs"
            print(f"{m:32} {alone[m]:10.5f} {', '.join(f'{v:.5f}' for v in seen):>18}{flag}")
        return wrong
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
    summary = {}
    for base_as_lora in (False, True):
        spec = EngineSpec(model=str(args.data_dir / "models" / "smollm2-135m-instruct"), served_name="base",
                          port=args.port, lora_modules=mods, max_lora_rank=16, max_loras=args.max_loras,
                          max_model_len=1024, kvcache_gib=1, dtype="float32", base_as_lora=base_as_lora)
        summary[base_as_lora] = run(spec, args.data_dir / "logs" / "vllm-mixed-batch.log")
    print(f"\nmodels whose mixed-batch output differs from alone: vLLM as is {summary[False]}, "
          f"base as a zero LoRA {summary[True]}")


if __name__ == "__main__":
    main()
