"""The gateway's CPU per streamed chunk, without an engine: a fake vLLM that streams SSE chunks quickly.

    .venv/bin/python bench/proxy_cpu.py [--baseline REF] [--concurrency 1 8] [--tokens 16 256]
        [--interval 0.005] [--events 2048] [--rounds 3] [--floor] [--profile]

A fake upstream (a raw asyncio HTTP/1.1 server in a process of its own) answers every streamed chat request
as vLLM does: a role event, one event per token (each a chunk of its own, --interval seconds apart), the
finish event, the usage event when asked for, `data: [DONE]`. Each gateway is an `empathy serve --upstream`
process (the work tree; with --baseline REF also the packages at git REF, extracted as
bench/gateway_overhead.py does), driven by a raw asyncio client (c keep-alive connections, each streaming
requests one after another), so the only Python on the measured path is the gateway's. `--floor` also
measures `bench/relay_floor.py`, the least relay on the gateway's stack (uvicorn, uvloop, aiohttp): what any
Python gateway of this design costs here.

Per gateway, concurrency and reply length, each run streams about --events events; the gateway's CPU (its
process CPU clock, `gateway_overhead.cpu_seconds`, net of its idle CPU) is printed per request and per 1,000
streamed chunks, and a line fit over the reply lengths splits it into a fixed cost per request and a cost per
chunk. Runs alternate between the gateways (ABAB) and the medians over --rounds are printed and written to
bench/out/proxy_cpu-<time>.json.
`--profile` records each gateway with py-spy during one extra run at the last concurrency and length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import (  # a script beside this one
    CLOCK_TICK,
    OUT,
    REPO,
    chat_request,
    cpu_seconds,
    free_port,
    gateway_trees,
    proc_stat,
    read_chunked,
    start_gateway,
    stop,
    top_functions,
    wait_http,
)

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"transfer-encoding: chunked\r\n\r\n")
WORDS = [b" I", b" am", b" so", b" sorry", b" to", b" hear", b" that", b" your", b" friend", b" is",
         b" moving", b" away", b".", b" That", b" must", b" feel"]


# -- the fake vLLM ---------------------------------------------------------------------------------------

def sse_events(n: int, usage: bool) -> list[bytes]:
    """A vLLM chat stream of `n` tokens, as SSE events (each one chunk of the HTTP body)."""
    head = b'{"id":"chatcmpl-%s","object":"chat.completion.chunk","created":%d,"model":"base","choices":[' % (
        os.urandom(8).hex().encode(), int(time.time()))

    def event(choices: bytes, tail: bytes = b"") -> bytes:
        return b"data: " + head + choices + b"]" + tail + b"}\n\n"

    role = b'{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}'
    out = [event(role)]
    out += [event(b'{"index":0,"delta":{"content":"%s"},"logprobs":null,"finish_reason":null}'
                  % WORDS[i % len(WORDS)]) for i in range(n)]
    out.append(event(b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"length","stop_reason":null}'))
    if usage:
        out.append(event(b"", b',"usage":{"prompt_tokens":20,"total_tokens":%d,"completion_tokens":%d}'
                         % (20 + n, n)))
    return [*out, b"data: [DONE]\n\n"]


async def fake_stream(writer: asyncio.StreamWriter, body: dict[str, Any], interval: float) -> None:
    options = body.get("stream_options") or {}
    writer.write(HEAD)
    for event in sse_events(int(body.get("max_tokens") or 16), bool(options.get("include_usage"))):
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.sleep(interval)
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def fake_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          interval: float) -> None:
    """Answers the requests of one keep-alive connection: /health, else a stream."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            size = [int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                    if k.strip().lower() == b"content-length"]
            body = await reader.readexactly(size[0]) if size else b""
            if head.startswith(b"GET"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                continue
            await fake_stream(writer, json.loads(body), interval)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def fake_upstream(port: int, interval: float) -> None:
    server = await asyncio.start_server(lambda r, w: fake_connection(r, w, interval), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# -- the client ------------------------------------------------------------------------------------------

async def read_stream(reader: asyncio.StreamReader) -> int:
    """One chunked SSE reply read to its end; its number of events (checked: the `empathy` field, [DONE])."""
    body = await read_chunked(reader)
    if b'"empathy":' not in body or b"data: [DONE]" not in body:
        raise SystemExit(f"a reply without the empathy field or [DONE]: {bytes(body[:300])!r}")
    return body.count(b"data: ")


async def client(port: int, tokens: int, requests: int, concurrency: int) -> int:
    """`requests` streamed chats, `concurrency` connections at a time; the events received."""
    messages = [{"role": "user", "content": "My friend is moving away."}]
    request = chat_request({"model": "base", "messages": messages, "max_tokens": tokens, "stream": True})
    left, events = [requests], [0]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left[0] > 0:
            left[0] -= 1
            writer.write(request)
            got = await read_stream(reader)  # (not `+= await`: that reads events[0] before awaiting)
            events[0] += got
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return events[0]


# -- measuring -------------------------------------------------------------------------------------------

def start_fake(port: int, interval: float) -> subprocess.Popen[bytes]:
    """The fake vLLM (this script with --fake-upstream) on `port`."""
    return subprocess.Popen([sys.executable, __file__, "--fake-upstream", str(port),
                             "--interval", str(interval)])


def start_floor(port: int, upstream: str) -> subprocess.Popen[bytes]:
    """bench/relay_floor.py on `port` in front of `upstream`."""
    script = Path(__file__).parent / "relay_floor.py"
    return subprocess.Popen([sys.executable, str(script), "--port", str(port), "--upstream", upstream],
                            stdout=subprocess.DEVNULL)


class Gateway:
    def __init__(self, name: str, tree: Path | None, data: Path, upstream: str) -> None:
        """`tree` None: the floor relay (bench/relay_floor.py) instead of a gateway."""
        self.name, self.port = name, free_port()
        data.mkdir()
        if tree is None:
            self.proc = start_floor(self.port, upstream)
        else:
            self.proc = start_gateway(tree, self.port, str(data), upstream)
        wait_http(f"http://127.0.0.1:{self.port}/health", 300, self.proc)
        self.idle = 0.0

    def measure_idle(self, seconds: float) -> None:
        before = cpu_seconds(self.proc.pid)
        time.sleep(seconds)
        self.idle = (cpu_seconds(self.proc.pid) - before) / seconds

    def run(self, tokens: int, concurrency: int, events: int) -> dict[str, float]:
        requests = max(2 * concurrency, events // (tokens + 3))
        asyncio.run(client(self.port, tokens, concurrency, concurrency))  # warm-up: connections open
        cpu, system, started = cpu_seconds(self.proc.pid), system_seconds(self.proc.pid), time.perf_counter()
        got = asyncio.run(client(self.port, tokens, requests, concurrency))
        wall = time.perf_counter() - started
        net = cpu_seconds(self.proc.pid) - cpu - self.idle * wall
        kernel = system_seconds(self.proc.pid) - system
        return {"requests": requests, "events": got, "wall_s": wall, "cpu_s": net,
                "ms_per_request": net / requests * 1000, "s_per_1k_events": net / got * 1000,
                "kernel_share": kernel / net if net > 0 else float("nan")}


def system_seconds(pid: int) -> float:
    """stime alone (the kernel's share: system calls, wake-ups), from /proc/<pid>/stat."""
    return int(proc_stat(Path(f"/proc/{pid}/stat"))[12]) / CLOCK_TICK


def fit(rows: dict[int, dict[str, float]]) -> tuple[float, float]:
    """Fixed CPU ms per request and CPU us per event: the line through the medians of the lengths."""
    xs = [r["events"] / r["requests"] for r in rows.values()]
    ys = [r["ms_per_request"] for r in rows.values()]
    if len(xs) < 2:
        return float("nan"), float("nan")
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope * 1000


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def report(gateways: list[Gateway], runs: dict[tuple[str, int, int], list[dict[str, float]]],
           args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    print(f"\n{'gateway':9} {'c':>3} {'tokens':>6} {'req':>5} {'events':>7} {'CPU ms/req':>11} "
          f"{'CPU s/1k chunks':>16} {'kernel':>7}")
    for c in args.concurrency:
        for gw in gateways:
            rows = {n: medians(runs[gw.name, c, n]) for n in args.tokens}
            for n, r in rows.items():
                print(f"{gw.name:9} {c:3} {n:6} {r['requests']:5.0f} {r['events']:7.0f} "
                      f"{r['ms_per_request']:11.3f} {r['s_per_1k_events']:16.4f} {r['kernel_share']:7.0%}")
            fixed, per_event = fit(rows)
            print(f"{gw.name:9} {c:3} fit: {fixed:.3f} ms per request + {per_event:.1f} us per chunk")
            summary[f"{gw.name}/c{c}"] = {"by_tokens": rows, "fixed_ms_per_request": fixed,
                                          "us_per_chunk": per_event}
    return summary


def profile(gw: Gateway, args: argparse.Namespace, stamp: str) -> None:
    spy = REPO / ".venv" / "bin" / "py-spy"
    out = OUT / f"proxy_cpu_profile-{stamp}-{gw.name}.txt"
    mode = ["--native"] if args.native else ["--nonblocking"]  # (py-spy reads C frames only when blocking)
    rec = subprocess.Popen([str(spy), "record", "--pid", str(gw.proc.pid), "--rate", "500", *mode,
                            "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    gw.run(args.tokens[-1], args.concurrency[-1], args.events)
    rec.send_signal(signal.SIGINT)
    rec.wait(60)
    if out.exists():
        out.with_suffix(".top.txt").write_text("\n".join(top_functions(out, 40)) + "\n")
        print(f"profile of {gw.name}: {out.relative_to(REPO)} (.top.txt: own time by function)")


def measure(args: argparse.Namespace, tmp: Path, procs: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    port = free_port()
    fake = start_fake(port, args.interval)
    procs.append(fake)
    upstream = f"http://127.0.0.1:{port}"
    wait_http(f"{upstream}/health", 30, fake)
    trees: list[tuple[str, Path | None, str]] = [*gateway_trees(args, tmp)]
    if args.floor:
        trees.append(("floor", None, "bench/relay_floor.py: the least relay on the same stack"))
    gateways = []
    for name, tree, _ in trees:
        gateways.append(Gateway(name, tree, tmp / f"data-{name}", upstream))
        procs.append(gateways[-1].proc)
    for gw in gateways:
        gw.measure_idle(args.idle_seconds)
    runs: dict[tuple[str, int, int], list[dict[str, float]]] = {}
    for i in range(args.rounds):
        for c in args.concurrency:
            for n in args.tokens:
                for gw in gateways if i % 2 == 0 else reversed(gateways):
                    runs.setdefault((gw.name, c, n), []).append(gw.run(n, c, args.events))
        print(f"round {i + 1}/{args.rounds} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    summary = report(gateways, runs, args)
    if args.profile:
        for gw in gateways:
            profile(gw, args, args.stamp)
    return {"paths": {name: desc for name, _, desc in trees},
            "idle_cpu_s_per_s": {g.name: g.idle for g in gateways}, "summary": summary,
            "runs": {"/".join(map(str, k)): v for k, v in runs.items()}}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", metavar="REF", help="also measure a gateway at git REF (before a change)")
    p.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                   help="also measure a gateway started in PATH (a copy of the packages with a change)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--tokens", type=int, nargs="+", default=[16, 256], help="reply lengths (tokens)")
    p.add_argument("--interval", type=float, default=0.005, help="seconds between a stream's events")
    p.add_argument("--events", type=int, default=2048, help="events streamed per run (about)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle-seconds", type=float, default=5.0)
    p.add_argument("--floor", action="store_true",
                   help="also measure bench/relay_floor.py, the least relay on the gateway's stack")
    p.add_argument("--profile", action="store_true", help="py-spy profile of each gateway (bench/out/)")
    p.add_argument("--native", action="store_true", help="--profile with C frames (py-spy --native)")
    p.add_argument("--fake-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.fake_upstream:
        asyncio.run(fake_upstream(args.fake_upstream, args.interval))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    args.stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            results = {"load": os.getloadavg(), "args": {k: v for k, v in vars(args).items()
                                                         if k != "fake_upstream"},
                       **measure(args, Path(tmp), procs)}
        finally:
            for proc in procs:
                stop(proc)
    target = OUT / f"proxy_cpu-{args.stamp}.json"
    target.write_text(json.dumps(results, indent=1))
    print(f"numbers in {target.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
