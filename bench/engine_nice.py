"""The engine's niceness (EMPATHY_VLLM_NICE) against the gateway's share of the first-token time and tok/s.

    .venv/bin/python bench/engine_nice.py [--nice 0 10] [--rounds 8] [--concurrency 8] [--requests 32]
        [--max-tokens 16] [--model PATH]

One engine (`empathy serve --engine-only` on --model) and one gateway of the work tree, as in
bench/gateway_overhead.py. Each round sets the niceness of every process and thread of the engine to each
value of --nice in turn (ABBA order; lowering it again needs root or CAP_SYS_NICE) and streams --requests
chats --concurrency at a time, straight to the engine and through the gateway. Printed per niceness: tok/s
of both paths and the gateway's TTFT share (client mean TTFT minus the mean TTFT the gateway saw from vLLM,
the same requests), with 95% intervals over rounds, and the paired difference against the first value. On 2
cores the engine keeps both busy; a gateway that wakes for a request or a token waits for a core unless the
engine is nicer than it. Numbers go to bench/out/engine_nice-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import (  # a script beside this one
    OUT,
    REPO,
    Path_,
    free_port,
    proc_stat,
    run_once,
    start_engine,
    start_gateway,
    stop,
    t_interval,
    wait_http,
)


def descendants(root: int) -> list[int]:
    """`root` and every process below it (vLLM's API server, engine core and workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(proc_stat(stat)[1])
        except (OSError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def renice(root: int, value: int) -> None:
    """Every thread of every process under `root` to niceness `value` (niceness is per thread on Linux)."""
    for pid in descendants(root):
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):  # the thread ended meanwhile
                os.setpriority(os.PRIO_PROCESS, int(task.name), value)


def one_round(args: argparse.Namespace, engine: int, paths: list[Path_], nice: int
              ) -> dict[str, dict[str, float]]:
    renice(engine, nice)
    return {path.name: run_once(path, args.concurrency, args) for path in paths}


def interval(values: list[float]) -> str:
    mean, low, high = t_interval(values)
    return f"{mean:8.2f} [{low:.2f}, {high:.2f}]"


def report(runs: dict[int, list[dict[str, dict[str, float]]]]) -> dict[str, dict[str, float]]:
    first = next(iter(runs))
    summary: dict[str, dict[str, float]] = {}
    print(f"\n{'nice':>4}  {'direct tok/s':>24}  {'gateway tok/s':>24}  {'TTFT share ms':>24}  "
          f"vs nice {first}")
    for nice, rs in runs.items():
        share = [r["gateway"]["gateway_ttft_share_ms"] for r in rs]
        diff = [a - b for a, b in zip(share, [r["gateway"]["gateway_ttft_share_ms"] for r in runs[first]],
                                      strict=True)]
        direct, gateway = [r["direct"]["tok_s"] for r in rs], [r["gateway"]["tok_s"] for r in rs]
        print(f"{nice:>4}  {interval(direct):>24}  {interval(gateway):>24}  {interval(share):>24}  "
              f"{interval(diff) if nice != first else ''}")
        summary[str(nice)] = {"direct_tok_s": statistics.fmean(direct),
                              "gateway_tok_s": statistics.fmean(gateway),
                              "ttft_share_ms": statistics.fmean(share),
                              "ttft_share_diff_ms": statistics.fmean(diff)}
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nice", type=int, nargs="+", default=[0, 10])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--model", default=str(REPO / ".empathy" / "models" / "smollm2-135m-instruct"))
    args = p.parse_args()
    args.engine_sid, args.client = None, "raw"  # run_once's: the engine's CPU is not counted here
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp:
        port, gport = free_port(), free_port()
        os.mkdir(f"{tmp}/engine")
        os.mkdir(f"{tmp}/gateway")
        engine, gateway = start_engine(args.model, port, f"{tmp}/engine"), None
        try:
            direct = f"http://127.0.0.1:{port}"
            wait_http(f"{direct}/health", 1200, engine)
            gateway = start_gateway(REPO, gport, f"{tmp}/gateway", direct)
            paths = [Path_("direct", direct), Path_("gateway", f"http://127.0.0.1:{gport}", gateway)]
            wait_http(f"{paths[1].url}/health", 300, gateway)
            runs: dict[int, list[dict[str, dict[str, float]]]] = {n: [] for n in args.nice}
            for i in range(args.rounds):
                for nice in args.nice if i % 2 == 0 else reversed(args.nice):
                    runs[nice].append(one_round(args, engine.pid, paths, nice))
                print(f"round {i + 1}/{args.rounds} done (load {os.getloadavg()[0]:.1f})", flush=True)
            summary = report(runs)
        finally:
            stop(gateway)
            stop(engine, group=True)
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / f"engine_nice-{stamp}.json"
    target.write_text(json.dumps({"args": vars(args), "summary": summary,
                                  "runs": {str(n): r for n, r in runs.items()}}, indent=1))
    print(f"numbers in {target.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
