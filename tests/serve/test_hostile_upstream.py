"""A broken upstream (issue 13, failures 4 and 5): garbage replies, 429s, dropped connections, hangs.

vLLM itself never sends garbage on purpose, so the upstream here is a stand-in for a broken or hostile one: a
raw asyncio HTTP/1.1 server that answers /health and then each completion request as the request's own
`hostile` field says (the gateway passes unknown fields through). No engine is needed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve.app import create_app
from tests.conftest import free_port
from tests.serve.conftest import API_KEY, Running, make_settings, serve_app

AUTH = {"authorization": f"Bearer {API_KEY}"}
REPLY = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "base",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                      "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "text": (200, {"content-type": "text/html"}, b"<html>proxy error</html>"),
    "array": (200, {"content-type": "application/json"}, b"[1, 2, 3]"),
    "nan": (200, {"content-type": "application/json"}, b'{"id": "x", "choices": [], "score": NaN}'),
    "429": (429, {"content-type": "application/json", "retry-after": "7"},
            b'{"error": {"message": "too many requests", "type": "rate_limit", "code": 429}}'),
    "500": (500, {"content-type": "application/json"}, b'{"error": {"message": "engine crashed"}}'),
    "ok": (200, {"content-type": "application/json"}, json.dumps(REPLY).encode()),
}


class HostileUpstream:
    """Answers per request's `hostile`: one of ANSWERS, `reset-once` (drops the first connection that
    carries it, then answers ok), `reset` (always drops), `hang` (never answers; notes when the gateway
    hangs up)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: Counter[str] = Counter()
        self.hung_up: dict[str, float] = {}
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.stopping = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.started.set()
        async with server:
            await self.stopping.wait()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                if not await self._answer(head, body, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _answer(self, head: bytes, body: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        mode = "ok" if head.startswith(b"GET /health") else str(body.get("hostile", "ok"))
        self.seen[mode] += 1
        if mode == "reset" or (mode == "reset-once" and self.seen[mode] == 1):
            writer.transport.abort()
            return False
        if mode == "hang":
            await reader.read()  # returns when the gateway closes the connection
            self.hung_up[body.get("user", "")] = time.monotonic()
            return False
        status, headers, content = ANSWERS.get(mode, ANSWERS["ok"])
        lines = [f"HTTP/1.1 {status} X", f"content-length: {len(content)}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + content)
        await writer.drain()
        return True


@contextmanager
def running(fake: HostileUpstream) -> Iterator[HostileUpstream]:
    """`fake` serving in a thread of its own until the block ends."""
    thread = threading.Thread(target=fake.run, daemon=True)
    thread.start()
    fake.started.wait(10)
    try:
        yield fake
    finally:
        fake.stop()
        thread.join(timeout=10)


@contextmanager
def gateway_over(tmp: Path, upstream: HostileUpstream, **settings: Any) -> Iterator[Running]:
    """A gateway (empty data dir: the base model) in front of `upstream` until the block ends."""
    (tmp / "data").mkdir()
    app = create_app(make_settings(tmp, tmp / "data", upstreams=[upstream.url], **settings))
    with serve_app(app) as url:
        yield Running(url, app)


@pytest.fixture(scope="module")
def upstream() -> Iterator[HostileUpstream]:
    with running(HostileUpstream()) as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: HostileUpstream) -> Iterator[Running]:
    with gateway_over(tmp_path_factory.mktemp("hostile-upstream"), upstream) as running_gw:
        yield running_gw


def _chat(gw: Running, mode: str, timeout: float = 30, **fields: Any) -> httpx.Response:
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "hostile": mode, **fields}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=AUTH, timeout=timeout)


@pytest.mark.parametrize(("mode", "status", "upstream_status"), [
    ("text", 502, "200"), ("array", 502, "200"), ("nan", 502, "200"), ("500", 502, "500"),
])
def test_upstream_garbage_is_502(gw: Running, mode: str, status: int, upstream_status: str) -> None:
    resp = _chat(gw, mode)
    assert resp.status_code == status, resp.text
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert resp.headers["x-upstream-status"] == upstream_status


def test_upstream_429_keeps_retry_after(gw: Running) -> None:
    resp = _chat(gw, "429")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "7"
    assert resp.json()["error"]["message"] == "too many requests"


def test_a_dropped_connection_is_retried_and_takes_nothing_out(gw: Running,
                                                               upstream: HostileUpstream) -> None:
    resp = _chat(gw, "reset-once")
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "ok"
    assert upstream.seen["reset-once"] == 2  # dropped once, answered on the retry
    failed = _chat(gw, "reset")  # a connection that always drops: that request alone fails ...
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_error"
    assert gw.gateway.pool.upstreams[0].healthy  # ... and the engine stays in (no 503s for anyone)
    assert _chat(gw, "ok").status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_hung_upstream_is_released_when_the_client_leaves(gw: Running, upstream: HostileUpstream,
                                                         stream: bool) -> None:
    user = f"leaver-{stream}"
    left = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        _chat(gw, "hang", timeout=1.0, user=user, stream=stream)
    left = time.monotonic()
    deadline = left + 5
    while user not in upstream.hung_up and time.monotonic() < deadline:
        time.sleep(0.05)
    assert user in upstream.hung_up, "the gateway still holds the upstream request of a client that left"
    assert upstream.hung_up[user] - left < 5.0  # measured ~0.1 s; generous for a loaded machine
    assert gw.gateway.pool.upstreams[0].outstanding == 0


def test_upstream_errors_count_under_closed_labels(gw: Running, tmp_path: Path) -> None:
    _chat(gw, "text")
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'empathy_errors_total{code="502",model="base"}' in metrics
    assert gw.gateway.settings.upstreams[0] not in metrics
