"""Forwarding a completion request to a vLLM engine: JSON or SSE, adding only the `empathy` field."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive

from serve.errors import APIError, unavailable
from serve.routing import Route
from serve.state import Gateway
from serve.store import Completion
from serve.upstreams import Upstream
from serve.validation import loads_strict

log = logging.getLogger("empathy.serve")
_FIRST_TOKEN = re.compile(rb'"(content|text)":\s*"[^"]')
T = TypeVar("T")


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


class ClientGone(Exception):
    """The client closed the connection before its reply was ready (the work was cancelled)."""


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientGone as soon as the client disconnects, with `work` cancelled (which
    closes its connection to vLLM, and vLLM aborts the generation). The body must have been read."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGone()
    return task.result()


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


def _transport_error(gw: Gateway, up: Upstream, exc: httpx.HTTPError) -> APIError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return APIError(504, f"vLLM did not answer in time ({type(exc).__name__}; "
                        "EMPATHY_UPSTREAM_TIMEOUT).", code="upstream_timeout")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        assert gw.pool is not None
        gw.pool.mark_down(up, f"{type(exc).__name__}: {exc}")
        return unavailable(f"no vLLM engine is reachable ({type(exc).__name__}); retry in a few seconds.")
    return APIError(502, f"the connection to vLLM broke ({type(exc).__name__}); retry the request.",
                    code="upstream_error")


async def _record(gw: Gateway, call: Call, completion_id: str | None, ttft: float | None,
                  stream: bool) -> None:
    latency = time.perf_counter() - call.started
    model, arm = gw.model_label(call.model), gw.arm_label(call.route.arm)
    gw.metrics.requests.labels(model, arm, "200").inc()
    gw.metrics.latency.labels(model, arm).observe(latency)
    if ttft is not None:
        gw.metrics.ttft.labels(model, arm).observe(ttft)
    if not completion_id:
        return
    row = Completion(id=completion_id[:128], model=call.model, adapter=call.route.adapter,
                     blend=call.route.blend, source=call.route.source, experiment=call.route.experiment,
                     arm=call.route.arm, subject=call.subject, latency_ms=latency * 1000,
                     ttft_ms=ttft * 1000 if ttft is not None else None, stream=stream)
    await asyncio.to_thread(gw.store.add_completion, row)


class _Failed(Exception):
    def __init__(self, up: Upstream, exc: httpx.HTTPError) -> None:
        super().__init__(str(exc))
        self.up, self.exc = up, exc


async def _attempt(gw: Gateway, call: Call, stream: bool) -> tuple[Upstream, httpx.Response,
                                                                   contextlib.AsyncExitStack]:
    """One try: an upstream slot and its response (read whole unless a successful stream); the returned
    stack releases both."""
    assert gw.pool is not None
    slot = contextlib.AsyncExitStack()
    up = await slot.enter_async_context(gw.pool.acquire(call.route.adapter))
    try:
        request = gw.pool.client.build_request("POST", f"{up.url}{call.path}", json=call.body,
                                               timeout=_timeout(gw))
        resp = await gw.pool.client.send(request, stream=True)
        slot.push_async_callback(resp.aclose)
        if not stream or resp.status_code >= 400:
            await resp.aread()
    except httpx.HTTPError as exc:
        await slot.aclose()
        raise _Failed(up, exc) from None
    except BaseException:  # cancelled (the client left): closing the connection makes vLLM abort
        await slot.aclose()
        raise
    return up, resp, slot


def _retryable(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.TimeoutException)


async def _send(gw: Gateway, call: Call, stream: bool) -> tuple[Upstream, httpx.Response,
                                                                contextlib.AsyncExitStack]:
    """`_attempt`, again after a broken or refused connection (nothing reached the client yet), up to
    EMPATHY_UPSTREAM_RETRIES times; then that request alone fails."""
    retries = gw.settings.upstream_retries
    for attempt in range(retries + 1):
        try:
            return await _attempt(gw, call, stream)
        except _Failed as failed:
            err = _transport_error(gw, failed.up, failed.exc)
            if attempt == retries or not _retryable(failed.exc):
                raise err from None
            log.warning("request %s: %s; sending it again", call.request_id, err.message)
    raise AssertionError("unreachable")


async def forward(gw: Gateway, call: Call) -> Response:
    _up, resp, slot = await _send(gw, call, stream=bool(call.body.get("stream")))
    if call.body.get("stream") and resp.status_code < 400:
        return StreamingResponse(_relay(gw, call, resp, slot), media_type="text/event-stream",
                                 headers={**call.headers(), "cache-control": "no-cache"})
    await slot.aclose()
    if resp.status_code >= 400:
        raise upstream_error(resp.status_code, resp.content, resp.headers)
    data = upstream_json(resp.status_code, resp.content)
    data["empathy"] = call.route.body_field()
    await _record(gw, call, data.get("id") if isinstance(data.get("id"), str) else None, None, stream=False)
    return JSONResponse(data, headers=call.headers())


def _timeout(gw: Gateway) -> httpx.Timeout:
    return httpx.Timeout(gw.settings.upstream_timeout, connect=2.0)


def inject(event: bytes, field: dict[str, Any]) -> tuple[bytes, str | None]:
    """The first SSE event with the `empathy` field added (and the completion id it carries)."""
    if not event.startswith(b"data: ") or event.startswith(b"data: [DONE]"):
        return event, None
    try:
        data = loads_strict(event[6:])
    except (ValueError, UnicodeDecodeError):
        return event, None
    if not isinstance(data, dict):
        return event, None
    data["empathy"] = field
    cid = data.get("id")
    return b"data: " + json.dumps(data, separators=(",", ":")).encode(), cid if isinstance(cid, str) else None


def error_event(err: APIError) -> bytes:
    return b"data: " + json.dumps(err.body()).encode() + b"\n\n"


async def _relay(gw: Gateway, call: Call, resp: httpx.Response,
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
        timeout = isinstance(exc, httpx.TimeoutException)
        err = APIError(504 if timeout else 502, "vLLM did not go on in time (EMPATHY_UPSTREAM_TIMEOUT)."
                       if timeout else f"the connection to vLLM broke ({type(exc).__name__}).",
                       code="upstream_timeout" if timeout else "upstream_error")
        log.warning("stream %s broke: %s", call.request_id, err.message)
        gw.metrics.errors.labels(gw.model_label(call.model), str(err.status)).inc()
        yield error_event(APIError(err.status, f"the engine stopped mid-stream: {err.message}",
                                   code=err.code))
    finally:
        await stack.aclose()
