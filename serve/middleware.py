"""Request ids and one structured access-log line per request (a plain ASGI middleware: no buffering)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("empathy.serve.access")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode()[:64] or f"req-{uuid.uuid4().hex[:16]}"
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*raw, (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            state = scope.get("state", {})
            route = state.get("route")
            log.info("request", extra={"request_id": request_id, "method": scope["method"],
                                       "path": scope["path"], "status": status["code"],
                                       "ms": round((time.perf_counter() - started) * 1000, 1),
                                       "model": state.get("model"),
                                       "route": route.header() if route is not None else None})
