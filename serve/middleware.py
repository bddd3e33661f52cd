"""Request ids, one structured access-log line per request, the completion routes' short way in, and the
last word on errors (a plain ASGI middleware: no buffering)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.errors import count, error_response, from_exception, log_error

log = logging.getLogger("empathy.serve.access")
Endpoint = Callable[[Request], Awaitable[Response]]


class RequestIdMiddleware:
    """`direct`: endpoints (taking the request, returning the response) that this middleware calls itself
    for a POST to their path, instead of `app` (for the completion routes, `serve.app.GatewayApp` puts one
    in front of FastAPI: past Starlette's error and exception middleware, FastAPI's dependency stack, the
    router's matching and the route's wrappers, each a few coroutine calls on the path of every reply).
    Their errors are answered here, as the app's handlers would (`serve.errors`); the app keeps the same
    routes, for the OpenAPI schema and its 405s."""

    def __init__(self, app: ASGIApp, direct: Mapping[str, Endpoint] | None = None) -> None:
        self.app = app
        self.direct = dict(direct or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = given or f"req-{os.urandom(8).hex()}"
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*raw, (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        endpoint = self.endpoint(scope)
        try:
            if endpoint is None:
                await self.app(scope, receive, send_with_id)
            else:
                await (await endpoint(Request(scope, receive)))(scope, receive, send_with_id)
        except Exception as exc:
            if status["started"]:
                raise  # mid-response: only closing the connection can tell the client
            await self._answer(scope, exc, send_with_id, request_id)
        finally:
            self._log(scope, request_id, status["code"], started)

    def endpoint(self, scope: Scope) -> Endpoint | None:
        """The direct endpoint that answers this HTTP request, if any."""
        return self.direct.get(scope["path"]) if scope["method"] == "POST" else None

    @staticmethod
    async def _answer(scope: Scope, exc: Exception, send: Send, request_id: str) -> None:
        """An unexpected error (or a client that left) as an OpenAI-shaped response; the connection stays
        usable."""
        err = from_exception(exc)
        app = scope.get("app")
        count(State(scope.get("state", {})), getattr(app, "state", None), err)
        log_error(err, exc)
        await error_response(err, request_id)(scope, _no_body, send)

    @staticmethod
    def _log(scope: Scope, request_id: str, code: int, started: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        state = scope.get("state", {})
        route = state.get("route")
        log.info("request", extra={"request_id": request_id, "method": scope["method"],
                                   "path": scope["path"], "status": code,
                                   "ms": round((time.perf_counter() - started) * 1000, 1),
                                   "model": state.get("model"),
                                   "route": route.header() if route is not None else None})


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
