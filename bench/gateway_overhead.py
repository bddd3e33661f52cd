"""Gateway overhead: the same chat load against vLLM directly and through the gateway, on one engine.

    .venv/bin/python bench/gateway_overhead.py [--upstream http://127.0.0.1:8001] [--requests 64]

Without --upstream the gateway (`empathy serve`, its own process, as in production) starts and supervises
one vLLM child on the base model, and the load goes to that child directly and through the gateway; at the
end the gateway gets SIGTERM and the script checks the child is gone. Prints throughput and p50/p95 time
to first token for both paths at each concurrency (median over --rounds runs of each path, in ABBA
order), and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

REPO = Path(__file__).resolve().parent.parent
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "I just found out my best friend is moving to another country."}]


async def one(client: AsyncOpenAI, max_tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    ttft, tokens = None, 0
    stream = await client.chat.completions.create(model="base", messages=MESSAGES, max_tokens=max_tokens,
                                                  temperature=0, stream=True, extra_body={"ignore_eos": True})
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            tokens += 1
            if ttft is None:
                ttft = time.perf_counter() - started
    return (ttft if ttft is not None else time.perf_counter() - started), tokens


async def load(base_url: str, requests: int, concurrency: int, max_tokens: int) -> dict[str, float]:
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="bench", max_retries=0, timeout=600)
    sem = asyncio.Semaphore(concurrency)

    async def guarded() -> tuple[float, int]:
        async with sem:
            return await one(client, max_tokens)

    await asyncio.gather(*(guarded() for _ in range(min(concurrency, 4))))  # warm-up
    started = time.perf_counter()
    results = await asyncio.gather(*(guarded() for _ in range(requests)))
    wall = time.perf_counter() - started
    await client.close()
    ttfts = sorted(r[0] * 1000 for r in results)
    return {"req_s": requests / wall, "tok_s": sum(r[1] for r in results) / wall,
            "ttft_p50_ms": statistics.median(ttfts), "ttft_p95_ms": ttfts[int(0.95 * (len(ttfts) - 1))]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not become healthy in {timeout:.0f}s")


ADMIN_KEY = "bench-admin"


def start_gateway(port: int, data_dir: str, upstream: str | None, model: str,
                  vllm_port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EMPATHY_LOG_LEVEL": "WARNING", "EMPATHY_STORE_URL": f"sqlite:///{data_dir}/bench.db",
           "EMPATHY_ADMIN_KEY": ADMIN_KEY,  # /health shows the engine's PID to the admin only
           # the same sampling on both paths: no gateway defaults added to the gateway's requests
           "EMPATHY_SAMPLING_DEFAULTS": '{"temperature": null, "top_p": null, "repetition_penalty": null, '
                                        '"max_tokens": null}'}
    cmd = [sys.executable, "-m", "empathy", "serve", "--port", str(port), "--data-dir", data_dir, "--no-ui"]
    cmd += ["--upstream", upstream] if upstream else ["--base-model", model, "--vllm-port", str(vllm_port)]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL)


def stop_gateway(gateway: subprocess.Popen[bytes], child_pid: int | None) -> None:
    """SIGTERM the gateway, as a process manager would, and check its vLLM child went with it."""
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(60)
    if child_pid is not None:
        time.sleep(1)
        try:
            os.kill(child_pid, 0)
            print(f"\nWARNING: vLLM child {child_pid} outlived the gateway")
        except ProcessLookupError:
            print(f"\ngateway stopped by SIGTERM (exit {gateway.returncode}); vLLM child {child_pid} is gone")


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def report(concurrency: int, direct: dict[str, float], gateway: dict[str, float]) -> None:
    print(f"\nconcurrency {concurrency}")
    print(f"  {'':8} {'req/s':>8} {'tok/s':>8} {'TTFT p50 ms':>12} {'TTFT p95 ms':>12}")
    for name, r in (("direct", direct), ("gateway", gateway)):
        print(f"  {name:8} {r['req_s']:8.2f} {r['tok_s']:8.1f} {r['ttft_p50_ms']:12.1f} "
              f"{r['ttft_p95_ms']:12.1f}")
    print(f"  throughput ratio gateway/direct: {gateway['tok_s'] / direct['tok_s']:.3f}   "
          f"TTFT p50 delta: {gateway['ttft_p50_ms'] - direct['ttft_p50_ms']:+.1f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", help="an existing vLLM server (default: the gateway supervises its own)")
    p.add_argument("--model", default=str(REPO / ".empathy" / "models" / "smollm2-135m-instruct"))
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2,
                   help="direct/gateway runs per concurrency, in ABBA order so drift hits both paths alike")
    args = p.parse_args()
    port, vllm_port = free_port(), free_port()
    upstream = args.upstream.rstrip("/").removesuffix("/v1") if args.upstream else f"http://127.0.0.1:{vllm_port}"
    with tempfile.TemporaryDirectory() as data_dir:
        gateway = start_gateway(port, data_dir, args.upstream, args.model, vllm_port)
        child_pid = None
        try:
            wait_http(f"http://127.0.0.1:{port}/health", 1200)
            child_pid = httpx.get(f"http://127.0.0.1:{port}/health", headers={
                "authorization": f"Bearer {ADMIN_KEY}"}).json()["engines"][0].get("pid")
            print(f"engine {upstream} (pid {child_pid}), gateway http://127.0.0.1:{port}; "
                  f"{args.requests} streamed chat requests, max_tokens {args.max_tokens}")
            for c in args.concurrency:
                runs: dict[str, list[dict[str, float]]] = {"direct": [], "gateway": []}
                urls = {"direct": upstream, "gateway": f"http://127.0.0.1:{port}"}
                for i in range(args.rounds):
                    for path in ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct"):
                        runs[path].append(asyncio.run(load(urls[path], args.requests, c, args.max_tokens)))
                report(c, median_of(runs["direct"]), median_of(runs["gateway"]))
        finally:
            stop_gateway(gateway, child_pid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
