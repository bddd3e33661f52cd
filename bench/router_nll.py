"""Router benchmark: NLL-scoring throughput for the router targets, vLLM vs transformers+PEFT on the same
samples (one run, ratio), and `empathy.router.Router.predict` latency (p50/p95).

    .venv/bin/python bench/router_nll.py --data-dir .empathy [--n 24] [--url http://127.0.0.1:8001]

Needs `<data_dir>/blends/index.json` (the grid scored) and, for the latency part, `<data_dir>/router/`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from empathy.settings import Settings


def score_both(settings: Settings, n: int, url: str | None, batch_size: int) -> dict[str, float]:
    import numpy as np
    from openai import OpenAI
    from transformers import AutoTokenizer

    from empathy.base_model import base_model_path
    from training.engine import engine_url
    from training.router.grid import read_blend_grid
    from training.router.nll import load_peft, reply_span, torch_nll, vllm_nll
    from training.router.train import router_samples

    adapters, rank = read_blend_grid(settings.data_dir)
    base = base_model_path(settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    samples = router_samples(settings, "valid", n, seed=1)
    items = [reply_span(tokenizer, s.messages()) for s in samples]
    names = [a.name for a in adapters]
    with engine_url(settings, url, {a.name: a.path for a in adapters}, rank, "vllm-bench") as base_url:
        client = OpenAI(base_url=base_url, api_key="EMPTY", timeout=600)
        vllm_nll(client, names, items[:batch_size], batch_size=batch_size, progress=False)  # warm-up
        started = time.perf_counter()
        fast = np.array(vllm_nll(client, names, items, batch_size=batch_size, progress=False))
        vllm_s = time.perf_counter() - started
    model = load_peft(base, {a.name: a.path for a in adapters})
    torch_nll(model, names[:1], items[:2], pad_id=tokenizer.pad_token_id or 0, progress=False)  # warm-up
    started = time.perf_counter()
    slow = np.array(torch_nll(model, names, items, pad_id=tokenizer.pad_token_id or 0, batch_size=batch_size,
                              progress=False))
    torch_s = time.perf_counter() - started
    scored = len(items) * len(names)
    return {"samples": len(items), "adapters": len(names),
            "reply_tokens": sum(i.end - i.start for i in items), "vllm_s": vllm_s, "torch_s": torch_s,
            "vllm_per_s": scored / vllm_s, "torch_per_s": scored / torch_s,
            "ratio": torch_s / vllm_s, "max_abs_diff": float(np.abs(fast - slow).max())}


def predict_latency(router_folder: Path, calls: int) -> dict[str, float]:
    from empathy.router import Router

    router = Router.load(router_folder)
    texts = ["I lost my job today and I don't know what to do.", "We went to the beach, it was great!",
             "My neighbour keeps parking in my spot.", "I finally passed my driving test!"]
    router.predict([{"role": "user", "content": texts[0]}])  # warm-up
    times = []
    for i in range(calls):
        messages = [{"role": "user", "content": texts[i % 4]},
                    {"role": "assistant", "content": "Oh really?"},
                    {"role": "user", "content": texts[(i + 1) % 4]}]
        started = time.perf_counter()
        router.predict(messages)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"calls": calls, "p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=".empathy")
    parser.add_argument("--n", type=int, default=24, help="samples scored by both backends")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--url", help="a running vLLM server that serves the blends")
    parser.add_argument("--calls", type=int, default=200, help="predict calls timed")
    args = parser.parse_args()
    from empathy.settings import get_settings

    settings = get_settings(data_dir=Path(args.data_dir))
    nll = score_both(settings, args.n, args.url, args.batch_size)
    print(f"NLL scoring, {nll['samples']} samples x {nll['adapters']} blends "
          f"({nll['reply_tokens']} reply tokens per blend):")
    print(f"  vLLM prompt_logprobs: {nll['vllm_s']:.1f} s, {nll['vllm_per_s']:.2f} sample-blends/s")
    print(f"  transformers+PEFT:    {nll['torch_s']:.1f} s, {nll['torch_per_s']:.2f} sample-blends/s")
    print(f"  ratio vLLM / transformers throughput: {nll['ratio']:.2f}x; "
          f"max |NLL diff| {nll['max_abs_diff']:.2e}")
    router_folder = settings.data_dir / "router"
    if (router_folder / "router.json").is_file():
        lat = predict_latency(router_folder, args.calls)
        print(f"Router.predict on CPU: p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms "
              f"({lat['calls']} calls)")
    else:
        print(f"no router in {router_folder}: predict latency not measured (run `empathy train router`).")


if __name__ == "__main__":
    main()
