"""Gateway overhead: the same streamed chat load on one vLLM engine, directly and through the gateway.

    .venv/bin/python bench/gateway_overhead.py [--upstream http://127.0.0.1:8001] [--rounds 12]
        [--requests 16] [--baseline REF] [--tree NAME=PATH] [--profile]

Without --upstream the script starts its own engine (`empathy serve --engine-only` on --model, by default
the README's base model SmolLM2-135M-Instruct, no adapters) and stops it at the end. Every gateway is an
`empathy serve --upstream` process of its own, as in production: `gateway` runs this work tree;
`--baseline REF` adds `baseline`, the same packages at git REF (extracted with `git archive`), so a change is
measured before and after in one run on the same engine; `--tree NAME=PATH` adds a gateway started in PATH
(a copy of the packages with one part changed or taken out, as `bench/proxy_cpu.py --tree`).

Each round runs every path once at one concurrency, in ABBA order (direct, gateway, baseline; then
baseline, gateway, direct) so a drift of the machine's load hits every path alike. Per round the paired
statistics are the throughput ratio gateway/direct (tokens/s) and the TTFT p50 difference gateway - direct;
printed as their mean over rounds with a 95% t-interval (the ratio's on the log scale). The gateway's own
CPU (its process CPU clock, to the nanosecond) is divided by the tokens it streamed in each run: CPU
seconds per 1,000 tokens, also net of its idle CPU (health checks and the experiments refresh, measured before
the load for --idle-seconds). With its own engine the script also counts the engine's CPU (every process of
its session) per run, and prints the CPU-implied throughput ratio engine / (engine + gateway CPU) per token:
on 2 saturated cores the gateway's CPU is taken from the engine, and this ratio, measured on the same tokens,
resolves 1% where the tok/s ratio between runs cannot (its noise is +-5-10% per run here). The TTFT
difference between runs keeps vLLM's batching noise (+-20 ms at c=8); a gateway that exports
`empathy_upstream_ttft_seconds` (its TTFT as seen from vLLM) also gives its **TTFT share**: the client's mean
TTFT minus the gateway's mean upstream TTFT over the same requests, all the time spent outside vLLM's reply
(client -> gateway -> vLLM and back, the gateway's work): an upper bound of what the gateway adds, paired per
request, so vLLM's noise cancels. `--profile`
records each gateway with py-spy during one extra run (collapsed stacks and the top functions by own time in
bench/out/). Numbers are written to bench/out/gateway_overhead-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
PACKAGES = ("empathy", "serve", "ui", "selection", "training")
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "I just found out my best friend is moving to another country."}]
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


_TOKEN = re.compile(rb'"content":"[^"]')


def chat_request(body: dict[str, Any]) -> bytes:
    """A POST /v1/chat/completions of `body` as raw HTTP/1.1 bytes (keep-alive, a bearer key)."""
    data = json.dumps(body).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer bench\r\ncontent-length: %d\r\n\r\n%s" % (len(data), data))


async def read_chunked(reader: asyncio.StreamReader,
                       seen: Callable[[bytearray, bytes], None] | None = None) -> bytearray:
    """A chunked 200 reply read to its end (its body with the chunk framing); `seen(body so far, data)` is
    called as each piece arrives."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the server answered {head[:200]!r}")
    body = bytearray()
    while not body.endswith(b"\r\n0\r\n\r\n"):
        data = await reader.read(65536)
        if not data:
            raise SystemExit("the server closed the connection mid-stream")
        if seen is not None:
            seen(body, data)
        body += data
    return body


class RawClient:
    """Streamed chats over raw keep-alive HTTP/1.1 connections (asyncio streams, one per request in flight):
    the first token is found by a byte search, tokens are counted as the events with content. The openai
    client parses every event into objects: at c=8 its own delays reach the TTFT of both paths (`--client
    openai` keeps it), and its CPU competes with the engine and the gateway for the same 2 cores."""

    def __init__(self, base_url: str) -> None:
        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def one(self, max_tokens: int) -> tuple[float, int]:
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        started, ttft = time.perf_counter(), None
        writer.write(chat_request({"model": "base", "messages": MESSAGES, "max_tokens": max_tokens,
                                   "temperature": 0, "stream": True, "ignore_eos": True}))

        def seen(body: bytearray, data: bytes) -> None:
            nonlocal ttft
            if ttft is None and _TOKEN.search(body[-16:] + data):
                ttft = time.perf_counter() - started

        body = await read_chunked(reader, seen)
        self.idle.append((reader, writer))
        return (ttft if ttft is not None else time.perf_counter() - started), len(_TOKEN.findall(body))

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


class OpenAIClient:
    def __init__(self, base_url: str) -> None:
        self.client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="bench", max_retries=0, timeout=600)

    async def one(self, max_tokens: int) -> tuple[float, int]:
        return await one(self.client, max_tokens)

    async def close(self) -> None:
        await self.client.close()


CLIENTS: dict[str, type[RawClient | OpenAIClient]] = {"raw": RawClient, "openai": OpenAIClient}


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


async def load(base_url: str, requests: int, concurrency: int, max_tokens: int,
               cpu: Callable[[], float], engine_cpu: Callable[[], float],
               upstream_ttft: Callable[[], tuple[float, float] | None],
               kind: str = "raw") -> dict[str, float]:
    """One run: `requests` streamed chats, `concurrency` at a time, after `concurrency` warm-up requests;
    `cpu()` (the gateway's), `engine_cpu()` and `upstream_ttft()` (the gateway's histogram of the TTFT it saw
    from vLLM: sum, count) are read around the timed part."""
    client = CLIENTS[kind](base_url)
    sem = asyncio.Semaphore(concurrency)

    async def guarded() -> tuple[float, int]:
        async with sem:
            return await client.one(max_tokens)

    await asyncio.gather(*(guarded() for _ in range(concurrency)))  # warm-up: connections open
    seen_before = upstream_ttft()
    cpu_before, engine_before, started = cpu(), engine_cpu(), time.perf_counter()
    results = await asyncio.gather(*(guarded() for _ in range(requests)))
    wall, cpu_used = time.perf_counter() - started, cpu() - cpu_before
    engine_used, seen_after = engine_cpu() - engine_before, upstream_ttft()
    await client.close()
    ttfts = sorted(r[0] * 1000 for r in results)
    tokens = sum(r[1] for r in results)
    run = {"req_s": requests / wall, "tok_s": tokens / wall, "cpu_s_per_1k_tok": cpu_used / tokens * 1000,
           "cpu_s": cpu_used, "wall_s": wall, "tokens": float(tokens), "engine_cpu_s": engine_used,
           "ttft_p50_ms": statistics.median(ttfts), "ttft_p95_ms": ttfts[int(0.95 * (len(ttfts) - 1))],
           "ttft_mean_ms": statistics.fmean(ttfts)}
    if seen_before is not None and seen_after is not None and seen_after[1] - seen_before[1] == requests:
        upstream_mean = (seen_after[0] - seen_before[0]) / requests * 1000
        run["gateway_ttft_share_ms"] = run["ttft_mean_ms"] - upstream_mean
    return run


def upstream_ttft_seen(base_url: str) -> tuple[float, float] | None:
    """Sum and count of the gateway's `empathy_upstream_ttft_seconds` (None: a gateway without it)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "empathy_upstream_ttft_seconds":
            values = {s.name: s.value for s in family.samples}
            return values["empathy_upstream_ttft_seconds_sum"], values["empathy_upstream_ttft_seconds_count"]
    return None


def proc_stat(stat: Path) -> list[str]:
    """The fields of a /proc/<pid>/stat file after the command name (state first: utime is [11], stime [12],
    the session id [3])."""
    return stat.read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process (all its threads, ended ones too) to the nanosecond: Linux's CPU clock of
    that process (clockid MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)). A gateway spends 30-50 ms of CPU in a
    c=8 run, 3-5 of /proc's 10 ms ticks, which were most of the run-to-run noise; utime + stime from
    /proc/<pid>/stat where the clock is not available."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        fields = proc_stat(Path(f"/proc/{pid}/stat"))
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def session_cpu_seconds(sid: int) -> float:
    """CPU seconds of every live process in session `sid` (the engine: its server, EngineCore, workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = proc_stat(stat)
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[3]) == sid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the process behind {url} exited ({proc.returncode}); see its output above")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not become healthy in {timeout:.0f}s")


def start_engine(model: str, port: int, data_dir: str) -> subprocess.Popen[bytes]:
    """`empathy serve --engine-only` (vLLM in its own process group, log in `data_dir`/engine.log)."""
    cmd = [sys.executable, "-m", "empathy", "serve", "--engine-only", "--host", "127.0.0.1",
           "--vllm-port", str(port), "--base-model", model, "--data-dir", data_dir]
    with open(f"{data_dir}/engine.log", "wb") as log:
        print(f"engine starting (log {data_dir}/engine.log)", file=sys.stderr)
        return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_gateway(tree: Path, port: int, data_dir: str, upstream: str,
                  via: tuple[str, ...] = ("-m", "empathy"),
                  extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`empathy serve` in `tree` (`via`: how Python starts it) in front of `upstream`."""
    env = {**os.environ, **(extra_env or {}), "EMPATHY_LOG_LEVEL": "WARNING",
           "EMPATHY_STORE_URL": f"sqlite:///{data_dir}/bench.db",
           # the same sampling on both paths: no gateway defaults added to the gateway's requests
           "EMPATHY_SAMPLING_DEFAULTS": '{"temperature": null, "top_p": null, "repetition_penalty": null, '
                                        '"max_tokens": null}'}
    cmd = [sys.executable, *via, "serve", "--port", str(port), "--data-dir", data_dir, "--no-ui",
           "--upstream", upstream]
    return subprocess.Popen(cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL)


def commit_of(ref: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.strip()


def extract(ref: str, into: Path) -> str:
    """The project's packages at git `ref` in `into` (a gateway started there imports them); its commit."""
    archive = subprocess.run(["git", "archive", ref, *PACKAGES], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return commit_of(ref)


@dataclass
class Path_:
    """One way to the engine: its URL and the process whose CPU is counted (None: direct)."""

    name: str
    url: str
    proc: subprocess.Popen[bytes] | None = None
    runs: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    idle_cpu: float = 0.0  # CPU seconds per second with no traffic (health checks, experiments refresh)

    def measure_idle(self, seconds: float) -> None:
        if self.proc is not None:
            before = cpu_seconds(self.proc.pid)
            time.sleep(seconds)
            self.idle_cpu = (cpu_seconds(self.proc.pid) - before) / seconds


def run_once(path: Path_, concurrency: int, args: argparse.Namespace) -> dict[str, float]:
    proc, sid = path.proc, args.engine_sid
    cpu = (lambda: cpu_seconds(proc.pid)) if proc else (lambda: 0.0)
    engine_cpu = (lambda: session_cpu_seconds(sid)) if sid else (lambda: 0.0)
    seen = (lambda: upstream_ttft_seen(path.url)) if proc else (lambda: None)
    return asyncio.run(load(path.url, args.requests, concurrency, args.max_tokens, cpu, engine_cpu, seen,
                            args.client))


def rounds(paths: list[Path_], concurrency: int, args: argparse.Namespace) -> None:
    for i in range(args.rounds):
        for path in paths if i % 2 == 0 else reversed(paths):
            path.runs.setdefault(concurrency, []).append(run_once(path, concurrency, args))
        print(f"  c={concurrency} round {i + 1}/{args.rounds} done", file=sys.stderr)


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% t-interval (degenerate with fewer than two values)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired(a: list[dict[str, float]], b: list[dict[str, float]]) -> dict[str, float]:
    """Paired over rounds: throughput ratio a/b (geometric mean, interval on the log scale) and the TTFT
    p50 difference a - b in ms."""
    ratio = t_interval([math.log(x["tok_s"] / y["tok_s"]) for x, y in zip(a, b, strict=True)])
    ttft = t_interval([x["ttft_p50_ms"] - y["ttft_p50_ms"] for x, y in zip(a, b, strict=True)])
    return {"ratio": math.exp(ratio[0]), "ratio_low": math.exp(ratio[1]), "ratio_high": math.exp(ratio[2]),
            "ttft_diff_ms": ttft[0], "ttft_diff_low": ttft[1], "ttft_diff_high": ttft[2]}


def cpu_implied(runs: list[dict[str, float]], idle_cpu: float) -> dict[str, float]:
    """On a machine whose cores the engine saturates, every CPU second of the gateway is taken from the
    engine: throughput ratio = engine CPU per token / (engine + gateway CPU per token), per run (the same
    tokens, so no noise between runs); the mean with its 95% interval over rounds. A bound for a 2-core box
    that is far narrower than the measured tok/s ratio."""
    ratios = [r["engine_cpu_s"] / (r["engine_cpu_s"] + max(r["cpu_s"] - idle_cpu * r["wall_s"], 0.0))
              for r in runs]
    mean, low, high = t_interval(ratios)
    return {"cpu_ratio": mean, "cpu_ratio_low": low, "cpu_ratio_high": high,
            "engine_cpu_s_per_1k_tok": statistics.fmean(r["engine_cpu_s"] / r["tokens"] * 1000 for r in runs)}


def summary(paths: list[Path_], concurrency: int) -> dict[str, Any]:
    direct = paths[0].runs[concurrency]
    out: dict[str, Any] = {"paths": {}, "vs_direct": {}, "vs_baseline": None}
    for p in paths:
        runs = p.runs[concurrency]
        row = {k: statistics.median(r[k] for r in runs) for k in ("tok_s", "ttft_p50_ms", "ttft_p95_ms")}
        row["engine_cpu_s_per_1k_tok"] = statistics.median(r["engine_cpu_s"] / r["tokens"] * 1000
                                                           for r in runs)
        if p.proc:
            row["cpu_s_per_1k_tok"], row["cpu_low"], row["cpu_high"] = t_interval(
                [r["cpu_s_per_1k_tok"] for r in runs])
            row["net_cpu_s_per_1k_tok"], row["net_low"], row["net_high"] = t_interval(
                [(r["cpu_s"] - p.idle_cpu * r["wall_s"]) / r["tokens"] * 1000 for r in runs])
            out["vs_direct"][p.name] = paired(runs, direct)
            if any(r["engine_cpu_s"] for r in runs):
                out["vs_direct"][p.name].update(cpu_implied(runs, p.idle_cpu))
            if all("gateway_ttft_share_ms" in r for r in runs):
                share = t_interval([r["gateway_ttft_share_ms"] for r in runs])
                keys = ("ttft_share_ms", "ttft_share_low", "ttft_share_high")
                out["vs_direct"][p.name].update(dict(zip(keys, share, strict=True)))
        out["paths"][p.name] = row
    if len(paths) == 3:
        out["vs_baseline"] = paired(paths[1].runs[concurrency], paths[2].runs[concurrency])
    return out


def report(concurrency: int, s: dict[str, Any]) -> None:
    print(f"\nconcurrency {concurrency} (medians over rounds)")
    cpu_head, net_head = "gateway CPU s / 1k tok [95%]", "net of idle CPU [95%]"
    print(f"  {'':9} {'tok/s':>8} {'TTFT p50 ms':>12} {'TTFT p95 ms':>12} {cpu_head:>30} {net_head:>26}"
          f" {'engine CPU s / 1k tok':>22}")
    for name, r in s["paths"].items():
        cpu = (f"{r['cpu_s_per_1k_tok']:.3f} [{r['cpu_low']:.3f}, {r['cpu_high']:.3f}]"
               if "cpu_s_per_1k_tok" in r else "")
        net = (f"{r['net_cpu_s_per_1k_tok']:.3f} [{r['net_low']:.3f}, {r['net_high']:.3f}]"
               if "net_cpu_s_per_1k_tok" in r else "")
        print(f"  {name:9} {r['tok_s']:8.1f} {r['ttft_p50_ms']:12.1f} {r['ttft_p95_ms']:12.1f} "
              f"{cpu:>30} {net:>26} {r['engine_cpu_s_per_1k_tok']:22.2f}")
    pairs = [(f"{n}/direct", v) for n, v in s["vs_direct"].items()]
    pairs += [("gateway/baseline", s["vs_baseline"])] if s["vs_baseline"] else []
    for label, v in pairs:
        print(f"  {label:17} throughput ratio {v['ratio']:.4f} [{v['ratio_low']:.4f}, {v['ratio_high']:.4f}]"
              f"   TTFT p50 diff {v['ttft_diff_ms']:+.2f} ms [{v['ttft_diff_low']:+.2f}, "
              f"{v['ttft_diff_high']:+.2f}]")
        if "ttft_share_ms" in v:
            print(f"  {'':17} TTFT share of the gateway {v['ttft_share_ms']:+.2f} ms "
                  f"[{v['ttft_share_low']:+.2f}, {v['ttft_share_high']:+.2f}] "
                  "(mean client TTFT - mean TTFT it saw from vLLM, same requests)")
        if "cpu_ratio" in v:
            print(f"  {'':17} CPU-implied ratio {v['cpu_ratio']:.4f} [{v['cpu_ratio_low']:.4f}, "
                  f"{v['cpu_ratio_high']:.4f}] (engine {v['engine_cpu_s_per_1k_tok']:.2f} CPU s / 1k tok)")


def top_functions(collapsed: Path, n: int = 25) -> list[str]:
    """The functions with the most own samples in py-spy's collapsed stacks, with their share."""
    own: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            own[stack.split(";")[-1]] += int(count)
    total = sum(own.values()) or 1
    return [f"{100 * c / total:5.1f}%  {frame}" for frame, c in own.most_common(n)]


def profile(path: Path_, concurrency: int, args: argparse.Namespace, stamp: str) -> Path | None:
    """py-spy samples the gateway (idle frames left out) during one extra run."""
    assert path.proc is not None
    spy = Path(sys.executable).parent / "py-spy"  # the dev dependency in the venv running this script
    if not spy.exists():
        print("py-spy is not installed (`pip install py-spy`, a dev dependency): no profile", file=sys.stderr)
        return None
    out = OUT / f"gateway_profile-{stamp}-{path.name}-c{concurrency}.txt"
    rec = subprocess.Popen([str(spy), "record", "--pid", str(path.proc.pid), "--rate", "250", "--nonblocking",
                            "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    run_once(path, concurrency, args)
    rec.send_signal(signal.SIGINT)
    rec.wait(60)
    if out.exists():
        (out.with_suffix(".top.txt")).write_text("\n".join(top_functions(out)) + "\n")
    return out


def stop(proc: subprocess.Popen[bytes] | None, group: bool = False) -> None:
    if proc is None or proc.poll() is not None:
        return
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", help="an existing vLLM server (default: the script starts its own engine)")
    p.add_argument("--model", default=str(REPO / ".empathy" / "models" / "smollm2-135m-instruct"),
                   help="base model of the script's own engine")
    p.add_argument("--requests", type=int, default=16, help="requests per run (after a warm-up)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--client", choices=sorted(CLIENTS), default="raw",
                   help="raw: HTTP/1.1 over asyncio streams (least client CPU); openai: the openai client")
    p.add_argument("--rounds", type=int, default=12,
                   help="rounds per concurrency (each runs every path once)")
    p.add_argument("--baseline", metavar="REF", help="also measure a gateway at git REF (before a change)")
    p.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                   help="also measure a gateway started in PATH (a copy of the packages with a change)")
    p.add_argument("--profile", action="store_true", help="py-spy profile of each gateway (bench/out/)")
    p.add_argument("--idle-seconds", type=float, default=20.0,
                   help="each gateway's CPU without traffic is measured this long and subtracted (net)")
    return p.parse_args()


def measure(paths: list[Path_], args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for c in args.concurrency:
        rounds(paths, c, args)
        results[str(c)] = summary(paths, c)
        report(c, results[str(c)])
    if args.profile:
        results["profiles"] = [str(profile(p, c, args, stamp)) for p in paths[1:] for c in args.concurrency]
    results["runs"] = {p.name: p.runs for p in paths}
    return results


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # the engine and gateways are stopped on the way out


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args()
    args.engine_sid = None  # an --upstream engine's processes are unknown: its CPU is not counted
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    engine, procs = None, list[subprocess.Popen[bytes]]()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            upstream = (args.upstream or "").rstrip("/").removesuffix("/v1")
            if not upstream:
                port = free_port()
                os.mkdir(f"{tmp}/engine")
                engine = start_engine(args.model, port, f"{tmp}/engine")
                args.engine_sid = engine.pid  # its own session: the engine's CPU is counted per run
                upstream = f"http://127.0.0.1:{port}"
                wait_http(f"{upstream}/health", 1200, engine)
            paths, header = start_paths(args, upstream, Path(tmp), procs)
            header.update({"engine": args.upstream or f"own engine on {args.model}", "load": os.getloadavg(),
                           "requests": args.requests, "rounds": args.rounds, "max_tokens": args.max_tokens})
            print(json.dumps(header))
            results = {"header": header, **measure(paths, args, stamp)}
            target = OUT / f"gateway_overhead-{stamp}.json"
            target.write_text(json.dumps(results, indent=1))
            print(f"\nload average at the end {os.getloadavg()}; numbers in {target.relative_to(REPO)}")
        finally:
            for proc in procs:
                stop(proc)
            stop(engine, group=True)
    return 0


def gateway_trees(args: argparse.Namespace, tmp: Path) -> list[tuple[str, Path, str]]:
    """The gateways to measure as (name, the folder it starts in, what it is): this work tree, the packages
    at `--baseline REF` (extracted into `tmp`), and each `--tree NAME=PATH`."""
    trees = [("gateway", REPO, f"work tree at {commit_of('HEAD')}")]
    if args.baseline:
        (tmp / "baseline").mkdir()
        commit = extract(args.baseline, tmp / "baseline")
        trees.append(("baseline", tmp / "baseline", f"git {args.baseline} = {commit}"))
    for name, path in (t.split("=", 1) for t in args.tree):
        trees.append((name, Path(path), f"packages in {path}"))
    return trees


def start_paths(args: argparse.Namespace, upstream: str, tmp: Path,
                procs: list[subprocess.Popen[bytes]]) -> tuple[list[Path_], dict[str, Any]]:
    trees = gateway_trees(args, tmp)
    paths = [Path_("direct", upstream)]
    for name, tree, _ in trees:
        port, data = free_port(), tmp / f"data-{name}"
        data.mkdir()
        proc = start_gateway(tree, port, str(data), upstream)
        procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/health", 300, proc)
        paths.append(Path_(name, f"http://127.0.0.1:{port}", proc))
    for path in paths:
        path.measure_idle(args.idle_seconds)
    return paths, {"paths": {name: desc for name, _, desc in trees},
                   "idle_cpu_s_per_s": {p.name: p.idle_cpu for p in paths if p.proc}}


if __name__ == "__main__":
    raise SystemExit(main())
