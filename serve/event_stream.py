"""A streamed (SSE) reply sent straight to the ASGI server, and the one watcher per request for the client
leaving."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

T = TypeVar("T")
_LAST = b"data: [DONE]\n\n"
# The scope's key (in `state`) of the server's own send, put there by `serve.app.GatewayApp`, for a streamed
# reply's body once its start went through every layer: the layers in between only watch the start, and
# each costs a coroutine call per chunk.
BODY_SEND = "body_send"


class ClientGone(Exception):
    """The client closed the connection before its reply was ready (the work was cancelled)."""


class ClientWatch:
    """One task per request that cancels the request's task when the client disconnects, from the moment
    the body is read until the reply is complete: while the request waits for vLLM (`until`: ClientGone)
    and, handed to the reply (`EventStream`), while it streams. Cancelling closes the connection to vLLM
    at its current `await`, which makes vLLM abort the generation. A context manager: its exit stops the
    watch unless a reply took it over."""

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task, self.left, self.handed_over = task, False, False
        self._ended = False  # uvicorn also answers `http.disconnect` once the reply is complete
        self._watcher = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self._ended:
            self.left = True
            self.task.cancel()

    def took_back(self) -> bool:
        """In an `except CancelledError`: whether the cancellation was the client leaving (then it is taken
        back: it was not a cancellation of the request's task)."""
        if self.left:
            self.task.uncancel()
        return self.left

    async def until(self, work: Awaitable[T]) -> T:
        """`work`'s result, or ClientGone as soon as the client disconnects (`work` is cancelled)."""
        try:
            return await work
        except asyncio.CancelledError:
            if not self.took_back():
                raise
            raise ClientGone() from None

    def end(self) -> None:
        self._ended = True
        self._watcher.cancel()

    def __enter__(self) -> ClientWatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.handed_over or kind is not None:
            self.end()


class Body:
    """The body of a streamed reply: `write` sends each piece as it comes, except one that ends with the
    stream's last event (`data: [DONE]`), held until the next piece comes or `end` sends it with the end of
    the reply (one write to the socket, not two: vLLM ends its reply right after it)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.held = b""

    async def write(self, chunk: bytes) -> None:
        if self.held:
            await self.send({"type": "http.response.body", "body": self.held, "more_body": True})
            self.held = b""
        if chunk.endswith(_LAST):
            self.held = chunk
        else:
            await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end(self) -> None:
        await self.send({"type": "http.response.body", "body": self.held, "more_body": False})


# What writes a streamed reply's body (through `Body.write`), and what runs once it ended or was cut short.
Pump = Callable[[Body], Awaitable[None]]
Close = Callable[[], None]


class EventStream(Response):
    """A `text/event-stream` reply whose `pump` writes each piece of the body as it comes. Starlette's
    StreamingResponse runs an anyio task group and an async generator per stream; here the request's
    `ClientWatch` cancels the sending task when the client leaves: `pump` is stopped at its current `await`,
    `close` runs (the relay closes its connection to vLLM, which aborts the generation) and the reply ends
    quietly, as Starlette's does."""

    media_type = "text/event-stream"

    def __init__(self, pump: Pump, close: Close, headers: Mapping[str, str], watch: ClientWatch) -> None:
        self.pump, self.close, self.watch = pump, close, watch
        watch.handed_over = True
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            body = Body(scope.get("state", {}).get(BODY_SEND, send))  # past the layers watching the start
            await self.pump(body)
            self.watch.end()
            await body.end()
        except asyncio.CancelledError:
            if not self.watch.took_back():
                raise
        except OSError:  # ASGI 2.4 servers raise it on sending to a client that left
            pass
        finally:
            self.watch.end()
            self.close()
