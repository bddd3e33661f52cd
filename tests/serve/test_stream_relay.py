"""The streamed relay byte for byte: vLLM's SSE cut at any place (one event per read, several, an event split
over reads), the `empathy` field added to the first event, the usage event the gateway asked for dropped,
the rest passed on unchanged; and a stream that breaks, stalls or loses its client.

The upstream is the hostile one of test_hostile_upstream with a `sse` mode: a stream of chat chunks as vLLM
sends them, in the pieces the request's `cut` asks for. No engine is needed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.store import CompletionRow
from tests.serve.conftest import Running
from tests.serve.test_hostile_upstream import AUTH, HostileUpstream, gateway_over, running

# Token texts that look like what the relay searches for: the chunks that carry them take the slow path.
TOKENS = ["Hello", " [DONE]", " usage", "usage", ' "usage": {', "\n\n", " é", " 😀", " data: x"]


def sse_events(cid: str, tokens: int, usage: bool) -> list[bytes]:
    """vLLM's chat stream of `tokens` tokens: role event, one event per token, finish, usage, [DONE]."""

    def event(choices: list[Any], **extra: Any) -> bytes:
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": 1, "model": "base",
                 "choices": choices, **extra}
        return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

    def choice(delta: dict[str, str], finish: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [event(choice({"role": "assistant", "content": ""}))]
    events += [event(choice({"content": TOKENS[i % len(TOKENS)]})) for i in range(tokens)]
    events.append(event(choice({}, "length")))
    if usage:
        events.append(event([], usage={"prompt_tokens": 3, "completion_tokens": tokens,
                                       "total_tokens": tokens + 3}))
    return [*events, b"data: [DONE]\n\n"]


class StreamingUpstream(HostileUpstream):
    """HostileUpstream plus `hostile: sse`: the stream in pieces of `cut` bytes (0: one event per piece),
    `pause` seconds apart; `break_after` events then the connection is dropped, `stall_after` events then
    nothing more (until the gateway hangs up, noted in `hung_up`)."""

    async def _answer(self, head: bytes, body: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        if body.get("hostile") != "sse":
            return await super()._answer(head, body, reader, writer)
        self.seen["sse"] += 1
        options = body.get("stream_options") or {}
        events = sse_events(body["user"], body.get("max_tokens", 16), bool(options.get("include_usage")))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        end = min(body.get("break_after", 10**6), body.get("stall_after", 10**6))
        data, cut = b"".join(events[:end]), body.get("cut", 0)
        pieces = events[:end] if not cut else [data[i:i + cut] for i in range(0, len(data), cut)]
        try:
            for piece in pieces:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(body.get("pause", 0.002))
                if reader.at_eof():
                    raise ConnectionResetError
        except ConnectionError:
            self.hung_up[body["user"]] = time.monotonic()
            return False
        if "break_after" in body:
            writer.transport.abort()
            return False
        if "stall_after" in body:
            await reader.read()  # returns when the gateway closes the connection
            self.hung_up[body["user"]] = time.monotonic()
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


@pytest.fixture(scope="module")
def upstream() -> Iterator[StreamingUpstream]:
    with running(StreamingUpstream()) as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: StreamingUpstream) -> Iterator[Running]:
    with gateway_over(tmp_path_factory.mktemp("stream-relay"), upstream, upstream_timeout=2.0) as running_gw:
        yield running_gw


def _stream(gw: Running, user: str, **fields: Any) -> str:
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "hostile": "sse", "user": user, "max_tokens": 16, **fields}
    resp = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=AUTH, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    return resp.content.decode()


def _stored(gw: Running, cid: str) -> CompletionRow | None:
    gw.rows_written()
    with Session(gw.gateway.store.engine) as s:
        return s.scalar(select(CompletionRow).where(CompletionRow.id == cid))


@pytest.mark.parametrize("cut", [0, 1, 7, 150, 1_000_000])  # per event, odd places, the whole stream at once
@pytest.mark.parametrize("usage", [False, True])
def test_stream_is_relayed_byte_for_byte(gw: Running, cut: int, usage: bool) -> None:
    cid = f"chatcmpl-relay-{cut}-{usage}"
    text = _stream(gw, cid, cut=cut, pause=0 if cut == 1 else 0.002,
                   **({"stream_options": {"include_usage": True}} if usage else {}))
    sent = [e.decode() for e in sse_events(cid, 16, usage=True)]
    kept = [e for e in sent if '"choices":[]' not in e] if not usage else sent  # the gateway's usage event
    got = text.split("\n\n")
    assert got[-1] == "" and len(got) == len(kept) + 1, text
    first = json.loads(got[0].removeprefix("data: "))
    assert first.pop("empathy")["adapter"] == "base"
    assert first == json.loads(kept[0].removeprefix("data: ").strip())
    assert [g + "\n\n" for g in got[1:-1]] == kept[1:]  # vLLM's bytes, unchanged
    row = _stored(gw, cid)
    assert row is not None and row.stream and row.completion_tokens == 16 and row.ttft_ms is not None


def test_stream_broken_mid_way_ends_with_an_error_event(gw: Running, upstream: StreamingUpstream) -> None:
    text = _stream(gw, "chatcmpl-broken", break_after=4)
    events = [e for e in text.split("\n\n") if e]
    assert len(events) == 5 and "empathy" in events[0]
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_error" and "stopped mid-stream" in error["message"]
    assert _stored(gw, "chatcmpl-broken") is None
    assert gw.gateway.pool.upstreams[0].healthy and gw.gateway.pool.upstreams[0].outstanding == 0


def test_stream_stalled_mid_way_times_out(gw: Running, upstream: StreamingUpstream) -> None:
    text = _stream(gw, "chatcmpl-stalled", stall_after=3)  # EMPATHY_UPSTREAM_TIMEOUT is 2 s here
    error = json.loads([e for e in text.split("\n\n") if e][-1].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_timeout"
    deadline = time.monotonic() + 5
    while "chatcmpl-stalled" not in upstream.hung_up and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "chatcmpl-stalled" in upstream.hung_up  # the stalled connection is closed, not kept


def test_client_leaving_mid_stream_closes_the_upstream(gw: Running, upstream: StreamingUpstream) -> None:
    user = "chatcmpl-leaver"
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "hostile": "sse", "user": user, "max_tokens": 1000, "pause": 0.02}
    seen = b""
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, headers=AUTH, timeout=30) as resp:
        for piece in resp.iter_raw():
            seen += piece
            if seen.count(b"\n\n") >= 3:
                break
    left = time.monotonic()
    while user not in upstream.hung_up and time.monotonic() < left + 5:
        time.sleep(0.05)
    assert user in upstream.hung_up, "the gateway still streams from vLLM to a client that left"
    assert upstream.hung_up[user] - left < 5.0
    deadline = time.monotonic() + 5
    while gw.gateway.pool.upstreams[0].outstanding and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.gateway.pool.upstreams[0].outstanding == 0
    assert _stream(gw, "chatcmpl-after-leaver").endswith("data: [DONE]\n\n")  # the gateway serves on
