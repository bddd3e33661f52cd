"""Streams from vLLM that stall: one clock for all of them instead of a timer per chunk.

A read timeout on the client (aiohttp's `sock_read`) cancels and re-arms a timer on every chunk that arrives,
about 2 us of event-loop CPU each, 20 times in a 16-token reply. Here a relayed stream only counts its
chunks (`Watched.chunks += 1`); one task per gateway looks every `tick` seconds and ends a stream whose count
has not moved for `timeout` seconds with aiohttp's own read-timeout error, which the relay turns into the
reply's closing error event. A stall is noticed after `timeout` to `timeout + tick` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp


@dataclass(eq=False)
class Watched:
    """One relayed stream: its reader and the chunks read so far."""

    reader: aiohttp.StreamReader
    chunks: int = 0
    seen: int = -1  # the count at the last look
    since: float = 0.0  # when the count last moved (loop time)


class StallWatch:
    """The relayed streams of one gateway (`watch`) and the clock that ends the stalled ones (`start`)."""

    def __init__(self, timeout: float, tick: float | None = None) -> None:
        self.timeout = timeout
        self.tick = tick if tick is not None else min(1.0, timeout / 4)
        self._streams: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, reader: aiohttp.StreamReader) -> Watched:
        """Watch `reader` until `discard`."""
        watched = Watched(reader, since=asyncio.get_running_loop().time())
        self._streams.add(watched)
        return watched

    def discard(self, watched: Watched) -> None:
        self._streams.discard(watched)

    @contextlib.contextmanager
    def watch(self, reader: aiohttp.StreamReader) -> Iterator[Watched]:
        watched = self.add(reader)
        try:
            yield watched
        finally:
            self.discard(watched)

    def look(self, now: float) -> None:
        """End the streams whose count has not moved for `timeout` seconds at loop time `now`."""
        for watched in list(self._streams):
            if watched.chunks != watched.seen:
                watched.seen, watched.since = watched.chunks, now
            elif now - watched.since >= self.timeout:
                self._streams.discard(watched)
                watched.reader.set_exception(aiohttp.SocketTimeoutError(
                    f"vLLM sent nothing for {self.timeout:g} s (EMPATHY_UPSTREAM_TIMEOUT)"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            self.look(loop.time())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
