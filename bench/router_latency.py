"""Router latency, agreement and held-out NLL per encoder runtime (torch, onnx, onnx-int8).

    .venv/bin/python bench/router_latency.py --data-dir DIR [--router release/router] [--contexts 1000]
        [--first-turns 300] [--runtimes torch,onnx,onnx-int8,onnx-int8@0]

Loads one router artifact (default: the committed release router) once per runtime: torch (torch's default
threads, as the gateway ran it before) and the ONNX Runtime graphs the gateway can use (EMPATHY_ROUTER_THREADS
threads, default 1): `onnx` (fused float32), `onnx-int8` (int8 weights, near ties re-checked on the float32
graph: EMPATHY_ROUTER_INT8_MARGIN; `onnx-int8@M` for margin M, `@0` int8 alone). Prints:
- p50/p95 of one `predict` call per first turn of the corpus's test split (EMPATHY_CORPUS_PATH), the runtimes
  timed in turn on each context, so load drifts hit all alike; wall time and the process's CPU time (on a
  loaded machine the CPU time is closer to what the call takes on an idle one), with the load average and
  the share of contexts a re-check encoded again (torch's OpenMP threads wait passively, OMP_WAIT_POLICY
  unless set: spinning, they took the cores and the CPU time of the runtime timed next);
- agreement with torch on --contexts random contexts of the test split (every turn, not only first ones),
  each predicted alone as the gateway does: the share on which both choose the same blend (argmax), the
  largest difference of the expected sensibility weight E[w] and of any probability;
- the mean NLL per reply token of each runtime's choices on the router's own samples (those it was fitted
  on; their per-blend NLLs are cached in <data-dir>/router/nll_cache.npz), on its held-out conversations and
  on all of them, with the number of choices that differ from torch's. Skipped, with the reason, when the
  data dir has no NLL table for this router's blends. The served router was refitted on all its samples, so
  these numbers measure what a runtime's differences cost, not the router's generalisation (router.json's
  `metrics` has that).
Numbers go to bench/out/router_latency-<time>.json as well.
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
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
Messages = list[dict[str, str]]
Predict = Callable[[Messages], list[float]]


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


def timed(predicts: dict[str, Predict], convs: list[Messages]) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU milliseconds (the process's, all threads: what is taken from vLLM on a shared machine) of
    each predict on each context, the runtimes in turn (rotating which goes first)."""
    ms: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in predicts}
    names = list(predicts)
    for i, conv in enumerate(convs):
        for name in names[i % len(names):] + names[:i % len(names)]:
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


def predict_each(router: Any, convs: Sequence[Messages]) -> np.ndarray:
    """Probabilities of each context predicted alone, as the gateway does (an int8 graph quantises its
    activations per call, so a batch's padding and neighbours would change them)."""
    return np.array([router.predict(c) for c in convs])


def choice_nll(probs: dict[str, np.ndarray], nll: np.ndarray, reference: str) -> dict[str, dict[str, float]]:
    """Mean NLL of each runtime's argmax choices, and how many choices differ from the reference's."""
    rows = np.arange(len(nll))
    ref = probs[reference].argmax(1)
    return {name: {"n": len(nll), "nll": float(nll[rows, p.argmax(1)].mean()),
                   "minus_" + reference: float((nll[rows, p.argmax(1)] - nll[rows, ref]).mean()),
                   "choices_changed": int((p.argmax(1) != ref).sum())} for name, p in probs.items()}


def router_nll_samples(router_dir: Path, data_dir: Path) -> tuple[list[Any], np.ndarray, np.ndarray] | str:
    """The router's own samples (as `empathy train router` drew them from the data dir), their cached
    per-blend NLLs and the held-out mask; or why they are not there."""
    from empathy.layout import Layout
    from empathy.settings import get_settings
    from training.router.cache import load_cache
    from training.router.fit import holdout_mask
    from training.router.train import router_samples

    meta = json.loads((router_dir / "router.json").read_text())
    folder = Layout(data_dir).router
    rows = load_cache(folder, meta.get("adapters", []))
    if not rows:
        return f"no NLL table for this router's blends in {folder} (pass --data-dir of the router's fit)"
    samples = router_samples(get_settings(data_dir=str(data_dir)), meta["split"], meta["n_samples"])
    if any(s.id not in rows for s in samples):
        return f"{folder}: the NLL table lacks some of the router's {len(samples)} samples"
    nll = np.array([rows[s.id] for s in samples], dtype=np.float64)
    return samples, nll, holdout_mask([s.conv_id for s in samples], float(meta["holdout"]))


def nll_report(routers: dict[str, Any], router_dir: Path, data_dir: Path) -> dict[str, Any]:
    found = router_nll_samples(router_dir, data_dir)
    if isinstance(found, str):
        return {"skipped": found}
    samples, nll, held = found
    convs = [s.messages() for s in samples]
    probs = {name: predict_each(r, convs) for name, r in routers.items()}
    reference = next(iter(routers))
    return {"held_out": choice_nll({n: p[held] for n, p in probs.items()}, nll[held], reference),
            "all": choice_nll(probs, nll, reference)}


class Counted:
    """An encoder that counts the texts it encodes (how many contexts a re-check encodes again)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.texts = encoder, 0

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.texts += len(texts)
        return self.encoder.encode(texts, batch_size)


def load_routers(router: str, runtimes: Sequence[str]) -> dict[str, Any]:
    """One router per runtime (`onnx-int8@M`: with re-check margin M; `onnx-int8`: the setting's), named
    with its threads; torch first (the reference). The encoders of the ONNX graphs are shared."""
    import torch

    from empathy.router import Recheck, Router, text_encoder
    from empathy.settings import get_settings
    from serve.state import encoder_cache

    settings = get_settings()
    encoders: dict[str, Any] = {}
    routers = {}
    for spec in sorted(runtimes, key=lambda r: r != "torch"):
        runtime, _, margin = spec.partition("@")
        if runtime not in encoders:
            encoders[runtime] = text_encoder(runtime, encoder_cache(), settings.router_threads)
        n = torch.get_num_threads() if runtime == "torch" else settings.router_threads
        name = f"{runtime} ({n} thread{'s' if n > 1 else ''})"
        recheck = None
        if runtime == "onnx-int8":
            margin_value = float(margin or settings.router_int8_margin)
            name = f"{runtime} ({n} thread{'s' if n > 1 else ''}, re-check < {margin_value:g})"
            if margin_value > 0:
                exact = encoders.get("onnx") or text_encoder("onnx", encoder_cache(), settings.router_threads)
                encoders["onnx"] = exact
                recheck = Recheck(Counted(exact), margin_value)
        routers[name] = Router.load(router, encoders[runtime], recheck)
    return routers


def recheck_count(router: Any) -> int:
    """How many contexts the router's re-check has encoded again so far (0 without one)."""
    return router.recheck.encoder.texts if router.recheck is not None else 0


def latency(routers: dict[str, Any], first: list[Messages]) -> dict[str, dict[str, float]]:
    for r in routers.values():  # warm-up
        for conv in first[:5]:
            r.predict(conv)
    before = {name: recheck_count(r) for name, r in routers.items()}
    out = {}
    for name, values in timed({name: r.predict for name, r in routers.items()}, first).items():
        (p50, p95), (cpu50, cpu95) = percentiles(values["wall"]), percentiles(values["cpu"])
        share = (recheck_count(routers[name]) - before[name]) / len(first)
        out[name] = {"p50": p50, "p95": p95, "cpu_p50": cpu50, "cpu_p95": cpu95, "rechecked": share}
        print(f"  {name:40} predict p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  (CPU p50 {cpu50:6.2f} ms, "
              f"p95 {cpu95:6.2f} ms)" + (f"  re-checked {share:.1%}" if routers[name].recheck else ""))
    return out


def print_nll(report: dict[str, Any]) -> None:
    if "skipped" in report:
        print(f"  held-out NLL: skipped: {report['skipped']}")
        return
    for part, rows in report.items():
        for name, row in rows.items():
            diff = {k: v for k, v in row.items() if k.startswith("minus_")}
            print(f"  NLL of the choices, {part:8} n={row['n']:5}  {name:40} {row['nll']:.6f}  "
                  f"{' '.join(f'{k} {v:+.6f}' for k, v in diff.items())}  "
                  f"choices changed {row['choices_changed']}")


def agreements(routers: dict[str, Any], convs: list[Messages]) -> dict[str, dict[str, float]]:
    """Each runtime's agreement with the first (torch) on `convs`, and the share its re-check encoded."""
    before = {name: recheck_count(r) for name, r in routers.items()}
    probs = {name: predict_each(r, convs) for name, r in routers.items()}
    reference, grid = next(iter(routers)), next(iter(routers.values())).grid
    out = {}
    for name, p in probs.items():
        if name == reference:
            continue
        row = out[name] = {**agreement(grid, probs[reference], p),
                           "rechecked": (recheck_count(routers[name]) - before[name]) / len(convs)}
        print(f"  agreement with {reference} on {row['n']} contexts: {name:40} same choice "
              f"{row['same_choice']:.4f}  max |E[w]| diff {row['max_abs_expected_w']:.2e}  "
              f"max prob diff {row['max_abs_prob']:.2e}" +
              (f"  re-checked {row['rechecked']:.1%}" if routers[name].recheck else ""))
    return out


def main() -> int:
    from empathy.router import RUNTIMES
    from empathy.settings import get_settings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--router", default=str(REPO / "release" / "router"))
    p.add_argument("--data-dir", default=None,
                   help="data dir of the router's fit (its router/nll_cache.npz); default EMPATHY_DATA_DIR")
    p.add_argument("--split", default="test")
    p.add_argument("--contexts", type=int, default=1000)
    p.add_argument("--first-turns", type=int, default=300)
    p.add_argument("--runtimes", default=",".join([*reversed(RUNTIMES), "onnx-int8@0"]),
                   help="comma-separated; onnx-int8@M: int8 with the float32 re-check of margin M (0: none)")
    p.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = p.parse_args()
    # torch's OpenMP workers otherwise spin-wait after each call, on the cores (and in the process CPU time)
    # of the runtime timed next; set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    routers = load_routers(args.router, args.runtimes.split(","))
    any_turn, first = contexts(args.split, args.contexts, args.first_turns)
    load = os.getloadavg()
    print(f"router {args.router}; {len(first)} first turns and {len(any_turn)} contexts of {args.split}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    result: dict[str, Any] = {"router": args.router, "load_before": load,
                              "latency_ms": latency(routers, first), "load_after": os.getloadavg()}
    print(f"  load average after the timing {' '.join(f'{x:.2f}' for x in result['load_after'])}")
    result["agreement"] = agreements(routers, any_turn)
    result["nll"] = nll_report(routers, Path(args.router), Path(args.data_dir or get_settings().data_dir))
    print_nll(result["nll"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    target = Path(args.out) / f"router_latency-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    target.write_text(json.dumps(result, indent=1))
    print(f"numbers in {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
