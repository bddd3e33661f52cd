"""What each step of a live gateway costs per request: a CPU clock around the steps of the proxy path.

    .venv/bin/python bench/gateway_steps.py [--tree PATH] [--tokens 16] [--requests 3000] [--concurrency 8]

A tight loop (timeit) shows what a step costs with warm caches; in a gateway serving many streams on a
shared 2-core machine every step ran 5-10 times dearer (caches are cold between requests), so the only way
to rank them is to time them there. This starts bench/proxy_cpu.py's fake vLLM and one gateway (the
packages in --tree, default this work tree) whose steps are wrapped, before it starts, by a timer of the
thread's CPU clock (`time.thread_time_ns`: other tasks' work between two awaits is not counted, so only
steps that do not wait are timed), drives it with proxy_cpu's client, and prints each step's calls per
request, CPU per call and per request (the timer's own cost, about 1 us per call, included), most costly
first. Numbers go to bench/out/gateway_steps-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import OUT, REPO, free_port, start_gateway, stop, wait_http  # scripts beside this one
from proxy_cpu import client, start_fake

# (module, attribute path) of the steps timed: functions that do not wait (or only for nothing, here).
STEPS = [("serve.validation", "parse_json"), ("serve.api.openai_api", "check_chat"),
         ("serve.api.openai_api", "check_api_key"), ("serve.api.openai_api", "resolve"),
         ("serve.api.openai_api", "with_defaults"), ("serve.api.openai_api", "session_key"),
         ("serve.event_stream", "ClientWatch.__init__"), ("serve.event_stream", "Body.write"),
         ("serve.proxy", "request_body"), ("serve.proxy", "inject"), ("serve.proxy", "usage_event"),
         ("serve.proxy", "_record"), ("serve.proxy", "_Reply.close"),
         ("serve.metrics", "GatewayMetrics.completed"), ("serve.completion_writer", "CompletionWriter.add")]

# Run as the gateway's process: wraps the steps, then runs `empathy serve` with the given arguments.
LAUNCHER = r'''
import atexit, functools, importlib, inspect, json, os, runpy, sys, time
steps, out, clock, seen = json.loads(os.environ["STEPS"]), os.environ["STEPS_OUT"], time.thread_time_ns, {}

def timed(label, f):
    def add(t0):
        calls_ns = seen.setdefault(label, [0, 0])
        calls_ns[0] += 1
        calls_ns[1] += clock() - t0
    if inspect.iscoroutinefunction(f):
        async def w(*a, **k):
            t0 = clock()
            try:
                return await f(*a, **k)
            finally:
                add(t0)
    else:
        def w(*a, **k):
            t0 = clock()
            try:
                return f(*a, **k)
            finally:
                add(t0)
    return functools.wraps(f)(w)

for module, path in steps:
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    setattr(owner, name, timed(path, getattr(owner, name)))
atexit.register(lambda: open(out, "w").write(json.dumps(seen)))
sys.argv = ["empathy", *sys.argv[1:]]
runpy.run_module("empathy", run_name="__main__")
'''


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, list[int]]:
    up, port, out = free_port(), free_port(), tmp / "steps.json"
    fake = start_fake(up, 0.002)
    gateway = start_gateway(args.tree, port, str(tmp), f"http://127.0.0.1:{up}", via=("-c", LAUNCHER),
                            extra_env={"STEPS": json.dumps(STEPS), "STEPS_OUT": str(out)})
    try:
        wait_http(f"http://127.0.0.1:{up}/health", 30, fake)
        wait_http(f"http://127.0.0.1:{port}/health", 300, gateway)
        asyncio.run(client(port, args.tokens, args.requests, args.concurrency))
    finally:
        # SIGINT, not SIGTERM: uvicorn re-raises the signal it caught once it has shut down, and only
        # KeyboardInterrupt lets the interpreter run its exit hooks (which write the numbers).
        gateway.send_signal(signal.SIGINT)
        gateway.wait(60)
        stop(fake)
    return json.loads(out.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", type=Path, default=REPO, help="where the gateway's packages are")
    p.add_argument("--tokens", type=int, default=16, help="reply length (tokens)")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seen = measure(args, Path(tmp))
    rows = sorted(((ns / args.requests / 1000, calls / args.requests, ns / calls / 1000, step)
                   for step, (calls, ns) in seen.items()), reverse=True)
    print(f"{'step':34} {'calls/req':>9} {'us/call':>8} {'us/req':>8}")
    for per_request, calls, per_call, step in rows:
        print(f"{step:34} {calls:9.2f} {per_call:8.2f} {per_request:8.2f}")
    print(f"{'all timed steps':34} {'':9} {'':8} {sum(r[0] for r in rows):8.2f}")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / f"gateway_steps-{stamp}.json"
    numbers = {"args": {k: str(v) for k, v in vars(args).items()}, "steps": seen}
    target.write_text(json.dumps(numbers, indent=1))
    print(f"numbers in {target.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
