"""The gateway's one clock for stalled streams from vLLM (serve/stall_watch.py): a stream whose chunk count
does not move for the timeout ends with aiohttp's read-timeout error; a moving one is left alone. The relay
end to end (a stalled fake vLLM -> the `upstream_timeout` error event) is in test_stream_relay.py."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol  # a reader needs one; no transport: never read

from serve.stall_watch import StallWatch


def reader(loop: asyncio.AbstractEventLoop) -> aiohttp.StreamReader:
    return aiohttp.StreamReader(BaseProtocol(loop), 2**16, loop=loop)


async def _look_ends_only_the_stalled_stream() -> None:
    loop = asyncio.get_running_loop()
    watch = StallWatch(timeout=10.0)
    stalled, moving = reader(loop), reader(loop)
    with watch.watch(stalled), watch.watch(moving) as busy:
        start = loop.time()
        for second in range(0, 12):
            busy.chunks += 1
            watch.look(start + second)
        assert moving.exception() is None
        assert isinstance(stalled.exception(), aiohttp.SocketTimeoutError)
        assert "EMPATHY_UPSTREAM_TIMEOUT" in str(stalled.exception())
    assert not watch._streams  # both left the watch with their relays


async def _the_clock_ends_a_stalled_read() -> None:
    """A real HTTP stream that sends one piece and then nothing: the watch's clock ends the read."""
    async def stall(reader_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader_.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await asyncio.sleep(30)

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    watch = StallWatch(timeout=0.2, tick=0.05)
    watch.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as resp:
            with watch.watch(resp.content) as watched:
                assert await resp.content.readany() == b"first"
                watched.chunks += 1
                with pytest.raises(aiohttp.SocketTimeoutError):
                    await asyncio.wait_for(resp.content.readany(), timeout=5)
    finally:
        await watch.stop()
        server.close()


def test_look_ends_only_the_stalled_stream() -> None:
    asyncio.run(_look_ends_only_the_stalled_stream())


def test_the_clock_ends_a_stalled_read() -> None:
    asyncio.run(_the_clock_ends_a_stalled_read())
