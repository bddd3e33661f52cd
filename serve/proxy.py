"""Forwarding a completion request to a vLLM engine: JSON or SSE, adding only the `empathy` field."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse

from serve.errors import APIError, unavailable
from serve.routing import Route
from serve.state import Gateway
from serve.store import Completion
from serve.upstreams import Upstream

log = logging.getLogger("empathy.serve")
_FIRST_TOKEN = re.compile(rb'"(content|text)":\s*"[^"]')


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

    def headers(self) -> dict[str, str]:
        return {"x-empathy-route": self.route.header(), "x-request-id": self.request_id}


def upstream_error(resp_status: int, content: bytes) -> APIError:
    """vLLM's error, kept as it said it (it already uses the OpenAI shape)."""
    try:
        err = json.loads(content).get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    message = err.get("message") if isinstance(err, dict) else None
    return APIError(resp_status, message or content.decode("utf-8", "replace")[:500] or "upstream error",
                    param=err.get("param") if isinstance(err, dict) else None,
                    code=str(err.get("code")) if isinstance(err, dict) and err.get("code") else None)


def _transport_error(gw: Gateway, up: Upstream, exc: httpx.HTTPError) -> APIError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return APIError(504, f"vLLM at {up.url} did not answer in time ({type(exc).__name__}).",
                        code="upstream_timeout")
    assert gw.pool is not None
    gw.pool.mark_down(up, f"{type(exc).__name__}: {exc}")
    return unavailable(f"vLLM at {up.url} is unreachable ({type(exc).__name__}); retry in a few seconds.")


async def _record(gw: Gateway, call: Call, completion_id: str | None, ttft: float | None,
                  stream: bool) -> None:
    latency = time.perf_counter() - call.started
    arm = call.route.arm or ""
    gw.metrics.requests.labels(call.model, arm, "200").inc()
    gw.metrics.latency.labels(call.model, arm).observe(latency)
    if ttft is not None:
        gw.metrics.ttft.labels(call.model, arm).observe(ttft)
    if not completion_id:
        return
    row = Completion(id=completion_id, model=call.model, adapter=call.route.adapter, blend=call.route.blend,
                     source=call.route.source, experiment=call.route.experiment, arm=call.route.arm,
                     subject=call.subject, latency_ms=latency * 1000,
                     ttft_ms=ttft * 1000 if ttft is not None else None, stream=stream)
    await asyncio.to_thread(gw.store.add_completion, row)


async def forward(gw: Gateway, call: Call) -> Response:
    if call.body.get("stream"):
        return await _forward_stream(gw, call)
    assert gw.pool is not None
    async with gw.pool.acquire() as up:
        try:
            resp = await gw.pool.client.post(f"{up.url}{call.path}", json=call.body,
                                             timeout=_timeout(gw))
        except httpx.HTTPError as exc:
            raise _transport_error(gw, up, exc) from None
    if resp.status_code >= 400:
        raise upstream_error(resp.status_code, resp.content)
    data = resp.json()
    data["empathy"] = call.route.body_field()
    await _record(gw, call, data.get("id"), None, stream=False)
    return JSONResponse(data, headers=call.headers())


def _timeout(gw: Gateway) -> httpx.Timeout:
    return httpx.Timeout(gw.settings.upstream_timeout, connect=2.0)


async def _forward_stream(gw: Gateway, call: Call) -> Response:
    assert gw.pool is not None
    stack = contextlib.AsyncExitStack()
    up = await stack.enter_async_context(gw.pool.acquire())
    try:
        request = gw.pool.client.build_request("POST", f"{up.url}{call.path}", json=call.body,
                                               timeout=_timeout(gw))
        resp = await gw.pool.client.send(request, stream=True)
    except httpx.HTTPError as exc:
        await stack.aclose()
        raise _transport_error(gw, up, exc) from None
    stack.push_async_callback(resp.aclose)
    if resp.status_code >= 400:
        content = await resp.aread()
        await stack.aclose()
        raise upstream_error(resp.status_code, content)
    return StreamingResponse(_relay(gw, call, up, resp, stack), media_type="text/event-stream",
                             headers={**call.headers(), "cache-control": "no-cache"})


def inject(event: bytes, field: dict[str, Any]) -> tuple[bytes, str | None]:
    """The first SSE event with the `empathy` field added (and the completion id it carries)."""
    if not event.startswith(b"data: ") or event.startswith(b"data: [DONE]"):
        return event, None
    try:
        data = json.loads(event[6:])
    except ValueError:
        return event, None
    data["empathy"] = field
    return b"data: " + json.dumps(data, separators=(",", ":")).encode(), data.get("id")


def error_event(err: APIError) -> bytes:
    return b"data: " + json.dumps(err.body()).encode() + b"\n\n"


async def _relay(gw: Gateway, call: Call, up: Upstream, resp: httpx.Response,
                 stack: contextlib.AsyncExitStack) -> AsyncIterator[bytes]:
    head, completion_id, ttft, recorded = b"", None, None, False
    try:
        async for chunk in resp.aiter_raw():
            if ttft is None and _FIRST_TOKEN.search(chunk):
                ttft = time.perf_counter() - call.started
            if head is not None:
                head += chunk
                if b"\n\n" not in head:
                    continue
                event, rest = head.split(b"\n\n", 1)
                event, completion_id = inject(event, call.route.body_field())
                chunk, head = event + b"\n\n" + rest, None
            if b"data: [DONE]" in chunk and not recorded:
                # Stored before the client sees the end, so feedback on this id never races the row.
                await _record(gw, call, completion_id, ttft, stream=True)
                recorded = True
            yield chunk
        if head:
            yield head
    except httpx.HTTPError as exc:
        err = _transport_error(gw, up, exc)
        log.warning("stream %s broke: %s", call.request_id, err.message)
        gw.metrics.errors.labels(call.model, str(err.status)).inc()
        yield error_event(APIError(err.status, f"the engine stopped mid-stream: {err.message}",
                                   code=err.code))
    finally:
        await stack.aclose()
