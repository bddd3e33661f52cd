"""The vLLM engines behind the gateway: least-outstanding-requests balancing and health tracking."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from serve.errors import unavailable
from serve.stall_watch import StallWatch

log = logging.getLogger("empathy.serve")


@dataclass
class Upstream:
    """One vLLM OpenAI server. `probe` overrides the HTTP health check (a supervised child is healthy
    exactly when its supervisor says so, which also covers the time it is restarting)."""

    url: str
    healthy: bool = False
    outstanding: int = 0
    probe: Callable[[], tuple[bool, str]] | None = None  # -> (healthy, state)
    state: str = "unknown"
    models: frozenset[str] | None = None  # serves only these models (None: every model no upstream claims)

    def describe(self, index: int, private: bool = False) -> dict[str, object]:
        """What /health shows; the URL only to the admin (`private`)."""
        return {"engine": index, "healthy": self.healthy, "outstanding": self.outstanding,
                "state": self.state, **({"url": self.url} if private else {})}


def serving(upstreams: list[Upstream], model: str | None) -> list[Upstream]:
    """The upstreams for `model`: those that claim it (the MoE engine claims `empathy-moe`), else the
    general ones (base model and LoRA adapters)."""
    claimed = [u for u in upstreams if u.models is not None and model in u.models]
    return claimed or [u for u in upstreams if u.models is None]


def pick(upstreams: list[Upstream], model: str | None = None,
         avoid: frozenset[str] = frozenset()) -> Upstream | None:
    """The healthy upstream for `model` with the fewest requests in flight (first one on ties); one whose URL
    is in `avoid` (it just failed this request) only when no other is healthy."""
    live = [u for u in serving(upstreams, model) if u.healthy]
    live = [u for u in live if u.url not in avoid] or live
    return min(live, key=lambda u: u.outstanding) if live else None


def upstream_client() -> aiohttp.ClientSession:
    """The gateway's one HTTP client to its engines: aiohttp, whose C parser takes 50-60% of httpx's CPU per
    streamed chunk (bench/proxy_cpu.py). Idle connections are closed after 4 s, before vLLM's own 5 s
    keep-alive ends them, so a request is never sent on a connection the engine is closing; proxies from
    the environment are not used, nor cookies (per-request work on the path of every reply)."""
    connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=4.0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                 trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
                                 skip_auto_headers=("User-Agent",))


class UpstreamPool:
    def __init__(self, upstreams: list[Upstream], client: aiohttp.ClientSession, interval: float = 2.0,
                 timeout: float = 5.0, read_timeout: float = 600.0) -> None:
        self.upstreams = upstreams
        self.client = client
        self.interval = interval
        self.timeout = timeout  # a /health slower than this takes the engine out (a dead one refuses at once)
        self.stalls = StallWatch(read_timeout)  # relayed streams that stop for read_timeout s are ended
        self._task: asyncio.Task[None] | None = None

    def take(self, model: str | None = None, avoid: frozenset[str] = frozenset()) -> Upstream:
        """A healthy engine serving `model` (not in `avoid`, if another is healthy), counted as busy until
        `give_back`."""
        self.refresh_probed()
        upstream = pick(self.upstreams, model, avoid)
        if upstream is None:
            states = ", ".join(f"{u.url} ({u.state})" for u in serving(self.upstreams, model))
            raise unavailable(f"no vLLM engine is ready: {states}; retry in a few seconds.")
        upstream.outstanding += 1
        return upstream

    @staticmethod
    def give_back(upstream: Upstream) -> None:
        upstream.outstanding -= 1

    def refresh_probed(self) -> None:
        """Supervised engines: their health is the supervisor's flag, read now (cheap), not at the last
        check, so a child that just died is out at once for requests and for `/health`."""
        for probed in (u for u in self.upstreams if u.probe is not None):
            probed.healthy, probed.state = probed.probe()  # type: ignore[misc]

    def mark_down(self, upstream: Upstream, reason: str) -> None:
        if upstream.healthy:
            log.warning("upstream %s taken out: %s", upstream.url, reason)
        upstream.healthy = False
        upstream.state = "down"

    async def check(self, upstream: Upstream) -> None:
        if upstream.probe is not None:
            ok, state = upstream.probe()
        else:
            try:
                async with self.client.get(f"{upstream.url}/health",
                                           timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                    ok = resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            state = "ready" if ok else "down"
        if ok and not upstream.healthy:
            log.info("upstream %s is healthy", upstream.url)
        upstream.healthy = ok
        upstream.state = state

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(u) for u in self.upstreams))

    async def _watch(self, upstream: Upstream) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check(upstream)

    async def _loop(self) -> None:
        """Each engine on its own clock: a slow answer of one never delays noticing that another died."""
        await asyncio.gather(*(self._watch(u) for u in self.upstreams))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())
        self.stalls.start()

    async def stop(self) -> None:
        await self.stalls.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
