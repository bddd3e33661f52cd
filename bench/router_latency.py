"""Router latency and agreement: `Router.predict` on the torch encoder (as before) and on ONNX Runtime.

    .venv/bin/python bench/router_latency.py [--router release/router] [--contexts 1000] [--first-turns 300]

Loads one router artifact (default: the committed release router) twice, with the torch encoder (torch's
default threads, as the gateway ran it before) and with the ONNX Runtime encoder the gateway uses now
(EMPATHY_ROUTER_THREADS threads, default 1). Prints:
- p50/p95 of one `predict` call per first turn of the corpus's test split (EMPATHY_CORPUS_PATH), both
  runtimes timed in turn on each context, so load drifts hit both alike; wall time and the process's CPU
  time (on a loaded machine the CPU time is closer to what the call takes on an idle one);
- on --contexts random contexts of the test split (every turn, not only first ones): the share on which both
  choose the same blend (argmax), the largest difference of the expected sensibility weight E[w], and of
  any probability.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
Messages = list[dict[str, str]]


def contexts(split: str, n_any: int, n_first: int, seed: int = 0) -> tuple[list[Messages], list[Messages]]:
    """`n_any` random contexts of any turn and `n_first` random first turns of the corpus split."""
    from empathy.router import context_only
    from empathy.settings import get_settings
    from selection.corpus import load_corpus

    samples = load_corpus(get_settings(), split).samples
    rng = random.Random(seed)
    convs = [context_only(s.messages()) for s in samples]
    first = [c for c in convs if len(c) == 1]
    return rng.sample(convs, min(n_any, len(convs))), rng.sample(first, min(n_first, len(first)))


def percentiles(ms: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


Predict = Callable[[Messages], list[float]]


def timed(predicts: dict[str, Predict], convs: list[Messages]) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU milliseconds (the process's, all threads: what is taken from vLLM on a shared machine) of
    each predict on each context, the runtimes in turn (alternating which goes first)."""
    ms: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in predicts}
    names = list(predicts)
    for i, conv in enumerate(convs):
        for name in names if i % 2 == 0 else reversed(names):
            started, cpu = time.perf_counter(), time.process_time()
            predicts[name](conv)
            ms[name]["cpu"].append((time.process_time() - cpu) * 1000)
            ms[name]["wall"].append((time.perf_counter() - started) * 1000)
    return ms


def agreement(grid: list[float], a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    g = np.asarray(grid)
    return {"n": len(a), "same_choice": float(np.mean(a.argmax(1) == b.argmax(1))),
            "max_abs_expected_w": float(np.abs(a @ g - b @ g).max()),
            "max_abs_prob": float(np.abs(a - b).max())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--router", default=str(REPO / "release" / "router"))
    p.add_argument("--split", default="test")
    p.add_argument("--contexts", type=int, default=1000)
    p.add_argument("--first-turns", type=int, default=300)
    p.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = p.parse_args()
    import torch

    from empathy.router import ContextEncoder, Router
    from empathy.settings import get_settings
    from serve.state import router_encoder

    settings = get_settings()
    routers = {f"torch ({torch.get_num_threads()} threads)": Router.load(args.router, ContextEncoder()),
               f"onnx ({settings.router_threads} thread(s))": Router.load(
                   args.router, router_encoder(settings))}
    any_turn, first = contexts(args.split, args.contexts, args.first_turns)
    print(f"router {args.router}; {len(first)} first turns and {len(any_turn)} contexts of {args.split}; "
          f"load average {os.getloadavg()}")
    for r in routers.values():  # warm-up
        r.predict(first[0])
    ms = timed({name: r.predict for name, r in routers.items()}, first)
    result: dict[str, object] = {"router": args.router, "load": os.getloadavg(), "latency_ms": {}}
    for name, values in ms.items():
        (p50, p95), (cpu50, cpu95) = percentiles(values["wall"]), percentiles(values["cpu"])
        result["latency_ms"][name] = {"p50": p50, "p95": p95, "cpu_p50": cpu50, "cpu_p95": cpu95}  # type: ignore[index]
        print(f"  {name:22} predict p50 {p50:6.2f} ms   p95 {p95:6.2f} ms   (CPU p50 {cpu50:6.2f} ms, "
              f"p95 {cpu95:6.2f} ms)")
    probs = [np.array([r.predict(c) for c in any_turn]) for r in routers.values()]
    grid = next(iter(routers.values())).grid
    result["agreement"] = agreement(grid, probs[0], probs[1])
    print(f"  agreement on {len(any_turn)} contexts: {json.dumps(result['agreement'])}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    target = Path(args.out) / f"router_latency-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    target.write_text(json.dumps(result, indent=1))
    print(f"numbers in {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
