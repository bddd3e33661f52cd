"""Forwarding a completion request to a vLLM engine: JSON or SSE, adding only the `empathy` field."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
from fastapi.responses import JSONResponse, Response

from serve.errors import APIError, unavailable
from serve.event_stream import Body, ClientWatch, EventStream
from serve.routing import Route
from serve.stall_watch import Watched
from serve.state import Gateway
from serve.store import Completion
from serve.upstreams import Upstream, UpstreamPool
from serve.validation import loads_strict

log = logging.getLogger("empathy.serve")
_FIRST_TOKEN = re.compile(rb'"(content|text)":\s*"[^"]')
_USAGE = re.compile(rb'"usage":\s*\{')


@dataclass
class Call:
    """One proxied request: what the client asked for and where it went."""

    path: str
    model: str
    body: dict[str, Any]
    route: Route
    subject: str | None
    request_id: str
    started: float
    sent: float = 0.0  # when the (last) try was sent to vLLM (perf_counter)
    hide_usage: bool = False  # the gateway asked vLLM for the stream's usage event; the client did not
    # Store writes started for this request that the reply need not wait for (an arm assignment): they run
    # while vLLM generates and are awaited before the reply is recorded or an error is answered.
    pending: list[asyncio.Task[Any]] = field(default_factory=list)

    async def settle(self) -> None:
        """Wait for the pending writes (their errors are raised here, as if they had run inline)."""
        pending, self.pending = self.pending, []
        if pending:
            await asyncio.gather(*pending)

    def headers(self) -> dict[str, str]:
        return {"x-empathy-route": self.route.header(), "x-request-id": self.request_id}


def upstream_error(status: int, content: bytes, headers: Mapping[str, str] | None = None) -> APIError:
    """vLLM's error, kept as it said it (it already uses the OpenAI shape); its 5xx are 502 (a failure
    behind the gateway), except 503 and 504; Retry-After is passed on."""
    try:
        err = loads_strict(content).get("error") or {}
    except (ValueError, AttributeError, UnicodeDecodeError):
        err = {}
    err = err if isinstance(err, dict) else {}
    message = err.get("message") if isinstance(err.get("message"), str) else None
    kept = {k: v for k, v in (headers or {}).items() if k.lower() == "retry-after"}
    code = err.get("code")
    return APIError(502 if status >= 500 and status not in (503, 504) else status,
                    message or content.decode("utf-8", "replace")[:500] or f"vLLM answered {status}",
                    param=err.get("param") if isinstance(err.get("param"), str) else None,
                    code=str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
                    headers={**kept, "x-upstream-status": str(status)})


def upstream_json(status: int, content: bytes) -> dict[str, Any]:
    """vLLM's JSON reply; 502 when it is not a JSON object of finite numbers."""
    try:
        data = loads_strict(content)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise APIError(502, f"vLLM answered {status} with a body that is not a JSON object "
                       f"({content[:80]!r}); the reply was dropped.", code="upstream_invalid_reply",
                       headers={"x-upstream-status": str(status)})
    return data


# What the client to vLLM raises: aiohttp's errors, and TimeoutError for every timeout (aiohttp's timeout
# errors derive from it: ConnectionTimeoutError for the connect timeout, SocketTimeoutError for a read).
UpstreamFailure = (aiohttp.ClientError, TimeoutError)
_CONNECT_FAILURES = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def _transport_error(gw: Gateway, up: Upstream, exc: Exception) -> APIError:
    if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError):
        return APIError(504, f"vLLM did not answer in time ({type(exc).__name__}; "
                        "EMPATHY_UPSTREAM_TIMEOUT).", code="upstream_timeout")
    if isinstance(exc, _CONNECT_FAILURES):
        assert gw.pool is not None
        gw.pool.mark_down(up, f"{type(exc).__name__}: {exc}")
        return unavailable(f"no vLLM engine is reachable ({type(exc).__name__}); retry in a few seconds.")
    return APIError(502, f"the connection to vLLM broke ({type(exc).__name__}); retry the request.",
                    code="upstream_error")


def reply_tokens(usage: Any) -> int | None:
    """`completion_tokens` of a reply's `usage` (None when vLLM did not say)."""
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else None


def ask_for_usage(body: dict[str, Any]) -> bool:
    """Make a streamed request end with vLLM's usage event (the reply's length is stored for the
    length-controlled results); True when the client did not ask for it, so the gateway drops it."""
    options = body.get("stream_options")
    if not body.get("stream") or (isinstance(options, dict) and options.get("include_usage")):
        return False
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


async def _record(gw: Gateway, call: Call, completion_id: str | None, ttft: float | None,
                  stream: bool, tokens: int | None = None) -> None:
    latency = time.perf_counter() - call.started
    await call.settle()
    gw.metrics.completed(gw.model_label(call.model), gw.arm_label(call.route.arm), latency, ttft)
    if not completion_id:
        return
    row = Completion(id=completion_id[:128], model=call.model, adapter=call.route.adapter,
                     blend=call.route.blend, source=call.route.source, experiment=call.route.experiment,
                     arm=call.route.arm, subject=call.subject, latency_ms=latency * 1000,
                     ttft_ms=ttft * 1000 if ttft is not None else None, stream=stream,
                     completion_tokens=tokens)
    await gw.add_completion(row)


class _Failed(Exception):
    def __init__(self, up: Upstream, exc: Exception) -> None:
        super().__init__(str(exc))
        self.up, self.exc = up, exc


# Made once: `json.dumps` with options builds an encoder on every call.
_REQUEST = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def request_body(body: dict[str, Any]) -> bytes:
    """The JSON sent to vLLM (compact, UTF-8, no NaN: what httpx sent)."""
    return _REQUEST.encode(body).encode()


@dataclass(eq=False)
class _Reply:
    """One try: its engine slot, vLLM's response and its body when read whole (None: a successful stream,
    not read yet). `close` gives the slot back, stops watching the stream (`_relay`) and releases the
    connection (a response not read to its end closes its connection, which makes vLLM abort the
    generation)."""

    pool: UpstreamPool
    up: Upstream
    resp: aiohttp.ClientResponse | None = None
    body: bytes | None = None
    watched: Watched | None = None
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.watched is not None:
            self.pool.stalls.discard(self.watched)
        if self.resp is not None:
            self.resp.release()
        self.pool.give_back(self.up)


async def _attempt(gw: Gateway, call: Call, stream: bool, avoid: frozenset[str] = frozenset()) -> _Reply:
    """One try: an upstream slot (another engine than those in `avoid`, if one is healthy) and its response
    (read whole unless a successful stream)."""
    assert gw.pool is not None
    reply = _Reply(gw.pool, gw.pool.take(call.route.adapter, avoid))
    call.sent = time.perf_counter()
    try:
        # EMPATHY_UPSTREAM_TIMEOUT for the headers (and a body read whole); a stream's pieces are watched
        # by the pool's StallWatch (`_relay`), not by a read timeout re-armed on every chunk.
        async with asyncio.timeout(gw.settings.upstream_timeout):
            reply.resp = resp = await gw.pool.client.post(f"{reply.up.url}{call.path}", headers=_JSON,
                                                          data=request_body(call.body), timeout=_CONNECT)
            reply.body = await resp.read() if not stream or resp.status >= 400 else None
    except UpstreamFailure as exc:
        reply.close()
        raise _Failed(reply.up, exc) from None
    except BaseException:  # cancelled (the client left): closing the connection makes vLLM abort
        reply.close()
        raise
    return reply


def _retryable(exc: Exception) -> bool:
    """A broken, refused or garbled connection (not a timeout)."""
    return isinstance(exc, aiohttp.ClientError) and not isinstance(exc, TimeoutError)


async def _send(gw: Gateway, call: Call, stream: bool) -> _Reply:
    """`_attempt`, again after a broken or refused connection (nothing reached the client yet), up to
    EMPATHY_UPSTREAM_RETRIES times, on another engine when there is one; then that request alone fails."""
    retries, failed_on = gw.settings.upstream_retries, frozenset[str]()
    for attempt in range(retries + 1):
        try:
            return await _attempt(gw, call, stream, failed_on)
        except _Failed as failed:
            failed_on |= {failed.up.url}  # the next try goes to another engine, if one is healthy
            err = _transport_error(gw, failed.up, failed.exc)
            if attempt == retries or not _retryable(failed.exc):
                raise err from None
            log.warning("request %s: %s; sending it again", call.request_id, err.message)
    raise AssertionError("unreachable")


async def forward(gw: Gateway, call: Call, watch: ClientWatch) -> Response:
    """vLLM's reply to `call`: JSON, or an EventStream that `watch` goes on watching while it streams."""
    call.hide_usage = ask_for_usage(call.body)
    try:
        reply = await _send(gw, call, stream=bool(call.body.get("stream")))
    except APIError:
        await call.settle()
        raise
    resp = reply.resp
    assert resp is not None
    if reply.body is None:
        headers = {**call.headers(), "cache-control": "no-cache"}
        return EventStream(partial(_relay, gw, call, reply), reply.close, headers, watch)
    reply.close()
    content = reply.body
    if resp.status >= 400:
        await call.settle()
        raise upstream_error(resp.status, content, resp.headers)
    data = upstream_json(resp.status, content)
    data["empathy"] = call.route.body_field()
    await _record(gw, call, data.get("id") if isinstance(data.get("id"), str) else None, None, stream=False,
                  tokens=reply_tokens(data.get("usage")))
    return JSONResponse(data, headers=call.headers())


_JSON = {"content-type": "application/json"}


_CONNECT = aiohttp.ClientTimeout(total=None, sock_connect=2.0)  # 2 s to connect; the rest: `_attempt`


def event_json(event: bytes) -> dict[str, Any] | None:
    """The JSON object an SSE `data:` event carries (None for `[DONE]`, comments and anything else)."""
    if not event.startswith(b"data: ") or event.startswith(b"data: [DONE]"):
        return None
    try:
        data = loads_strict(event[6:])
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def inject(event: bytes, extra: dict[str, Any]) -> tuple[bytes, str | None]:
    """The first SSE event with the `empathy` field added (and the completion id it carries). The field is
    spliced in before the object's closing brace: vLLM's own bytes are kept, not decoded and encoded again."""
    data = event_json(event)
    if data is None:
        return event, None
    cid = data.get("id")
    cid = cid if isinstance(cid, str) else None
    body = event[6:].rstrip()
    if "empathy" in data or not body.endswith(b"}"):  # the field replaces one vLLM sent
        data["empathy"] = extra
        return b"data: " + _COMPACT.encode(data).encode(), cid
    added = b'"empathy":' + _COMPACT.encode(extra).encode()
    return b"data: " + body[:-1] + (b"," if data else b"") + added + b"}", cid


def error_event(err: APIError) -> bytes:
    return b"data: " + json.dumps(err.body()).encode() + b"\n\n"


def usage_event(event: bytes) -> tuple[int | None, bool]:
    """From one SSE event: the reply tokens of its `usage`, and whether it is the usage-only event (no
    choices) that ends a stream with `include_usage`."""
    data = event_json(event) if _USAGE.search(event) else None
    if data is None:
        return None, False
    return reply_tokens(data.get("usage")), data.get("choices") == []


@dataclass
class _Stream:
    """A relayed stream cut into SSE events: the first data event gets the `empathy` field, the usage
    event the gateway asked for is dropped; the completion id and reply tokens are kept for the record."""

    field: dict[str, Any]
    hide_usage: bool
    pending: bytes = b""
    injected: bool = False
    completion_id: str | None = None
    tokens: int | None = None

    def events(self, chunk: bytes) -> list[bytes]:
        *done, self.pending = (self.pending + chunk).split(b"\n\n")
        return done

    def rewrite(self, event: bytes) -> bytes | None:
        """The event as the client gets it (None: dropped)."""
        if not self.injected and event.startswith(b"data: ") and not event.startswith(b"data: [DONE]"):
            event, self.completion_id = inject(event, self.field)
            self.injected = True
        tokens, usage_only = usage_event(event)
        self.tokens = tokens if tokens is not None else self.tokens
        return None if usage_only and self.hide_usage else event


async def _relay(gw: Gateway, call: Call, reply: _Reply, body: Body) -> None:
    """vLLM's stream written to the client's `body` as it comes (the EventStream closes `reply`)."""
    state, ttft, recorded = _Stream(call.route.body_field(), call.hide_usage), None, False
    assert reply.resp is not None
    content = reply.resp.content
    reply.watched = watched = reply.pool.stalls.add(content)
    try:
        while chunk := await content.readany():
            watched.chunks += 1
            if ttft is None and _FIRST_TOKEN.search(state.pending + chunk):  # a token cut over two reads
                now = time.perf_counter()
                ttft = now - call.started
                gw.metrics.upstream_ttft.observe(now - call.sent)
            # Most chunks go to the client as they came, not cut into events: whole events after the
            # first one, none of them `[DONE]` or with a `usage` (byte searches, inline: every token).
            if (state.injected and not state.pending and chunk.endswith(b"\n\n") and b"[DONE]" not in chunk
                    and b'"usage"' not in chunk):
                await body.write(chunk)
                continue
            out = []
            for event in state.events(chunk):
                if event.startswith(b"data: [DONE]") and not recorded:
                    # Queued before the client sees the end: feedback on this id waits for the row
                    # (`Gateway.completions_written`).
                    await _record(gw, call, state.completion_id, ttft, stream=True, tokens=state.tokens)
                    recorded = True
                kept = state.rewrite(event)
                if kept is not None:
                    out.append(kept + b"\n\n")
            if out:
                await body.write(b"".join(out))
        if state.pending:
            await body.write(state.pending)
    except UpstreamFailure as exc:
        timeout = isinstance(exc, TimeoutError)
        err = APIError(504 if timeout else 502, "vLLM did not go on in time (EMPATHY_UPSTREAM_TIMEOUT)."
                       if timeout else f"the connection to vLLM broke ({type(exc).__name__}).",
                       code="upstream_timeout" if timeout else "upstream_error")
        log.warning("stream %s broke: %s", call.request_id, err.message)
        gw.metrics.errors.labels(gw.model_label(call.model), str(err.status)).inc()
        await body.write(error_event(APIError(err.status, f"the engine stopped mid-stream: {err.message}",
                                              code=err.code)))
