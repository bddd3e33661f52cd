"""The streamed reply's parts without a server: the body that sends `data: [DONE]` with the reply's end, and
the one watcher per request that turns a client leaving into ClientGone (or a quiet end of the stream)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message

from serve.event_stream import Body, ClientGone, ClientWatch, EventStream


class Client:
    """An ASGI client: `receive` waits until `leave()`; `sent` keeps what the app sent."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.gone.set()

    def bodies(self) -> list[tuple[bytes, bool]]:
        return [(m["body"], m["more_body"]) for m in self.sent if m["type"] == "http.response.body"]


async def test_the_last_event_goes_out_with_the_end_of_the_reply() -> None:
    client = Client()
    body = Body(client.send)
    await body.write(b"data: 1\n\n")
    await body.write(b"data: 2\n\ndata: [DONE]\n\n")
    assert client.bodies() == [(b"data: 1\n\n", True)]  # held: the end may come with it
    await body.end()
    assert client.bodies() == [(b"data: 1\n\n", True), (b"data: 2\n\ndata: [DONE]\n\n", False)]


async def test_a_piece_after_the_last_event_sends_it_on() -> None:
    client = Client()
    body = Body(client.send)
    await body.write(b"data: [DONE]\n\n")
    await body.write(b": trailing comment\n\n")
    await body.end()
    assert client.bodies() == [(b"data: [DONE]\n\n", True), (b": trailing comment\n\n", True), (b"", False)]


async def test_a_client_leaving_before_the_reply_is_client_gone() -> None:
    client = Client()
    waited = asyncio.Event()

    async def work() -> str:
        waited.set()
        await asyncio.sleep(60)
        return "never"

    async def request() -> None:
        with ClientWatch(client.receive) as watch:
            await watch.until(work())

    task = asyncio.ensure_future(request())
    await waited.wait()
    client.leave()
    with pytest.raises(ClientGone):
        await task
    assert not task.cancelling()  # taken back: the request's task was not cancelled


async def test_a_cancelled_request_is_not_taken_for_a_client_leaving() -> None:
    client = Client()

    async def request() -> None:
        with ClientWatch(client.receive) as watch:
            await watch.until(asyncio.sleep(60))

    task = asyncio.ensure_future(request())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_stream_takes_the_watch_over_and_ends_quietly_when_the_client_leaves() -> None:
    client, closed, wrote = Client(), asyncio.Event(), asyncio.Event()

    async def pump(body: Body) -> None:
        await body.write(b"data: 1\n\n")
        wrote.set()
        await asyncio.sleep(60)

    def close() -> None:
        closed.set()

    async def request() -> None:
        with ClientWatch(client.receive) as watch:
            reply = EventStream(pump, close, {}, watch)
        assert not watch._watcher.done()  # handed over: the block's end did not stop it
        scope: dict[str, Any] = {"type": "http"}
        await reply(scope, client.receive, client.send)

    task = asyncio.ensure_future(request())
    await wrote.wait()
    client.leave()
    await asyncio.wait_for(task, 5)  # no error: the stream ended quietly
    assert closed.is_set()
    assert client.bodies() == [(b"data: 1\n\n", True)]
