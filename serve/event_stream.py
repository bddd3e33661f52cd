"""A streamed (SSE) reply sent straight to the ASGI server, with one watcher task for the client leaving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_LAST = b"data: [DONE]\n\n"
# The scope's key (in `state`) of the server's own send, put there by `serve.app.GatewayApp`, for a streamed
# reply's body once its start went through every layer: the layers in between (Starlette's error and
# exception middleware, `serve.middleware`) only watch the start, and each costs a coroutine call per chunk.
BODY_SEND = "body_send"


class EventStream(Response):
    """A `text/event-stream` reply that sends each piece of `body` as it comes, except the stream's last
    event (`data: [DONE]`), which goes out with the end of the reply once `body` ends (one write to the
    socket, not two). Starlette's StreamingResponse runs an anyio task group per stream to notice the client
    leaving; here one plain watcher task cancels the sending task when the client leaves: `body` is closed
    at its current `await` (the relay's `finally` closes the connection to vLLM, which aborts the
    generation) and the reply ends quietly, as Starlette's does."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncGenerator[bytes, None], headers: Mapping[str, str]) -> None:
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        state = {"ending": False, "left": False}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not state["ending"]:  # uvicorn also answers `http.disconnect` once the reply is complete
                state["left"] = True
                sender.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            send = scope.get("state", {}).get(BODY_SEND, send)  # past the layers that only watch the start
            last = await self._send_all_but_last(send)
            state["ending"] = True
            await send({"type": "http.response.body", "body": last, "more_body": False})
        except asyncio.CancelledError:
            if not state["left"]:
                raise
            sender.uncancel()  # the client left: not a cancellation of the request's task
        except OSError:  # ASGI 2.4 servers raise it on sending to a client that left
            pass
        finally:
            watcher.cancel()
            await self.body_iterator.aclose()

    async def _send_all_but_last(self, send: Send) -> bytes:
        """Sends `body` as it comes but a piece that ends with `data: [DONE]`, held until the next one comes
        or `body` ends (vLLM ends its reply right after it); returns what is held at the end."""
        held = b""
        async for chunk in self.body_iterator:
            if held:
                await send({"type": "http.response.body", "body": held, "more_body": True})
            held = chunk if chunk.endswith(_LAST) else b""
            if not held:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        return held
