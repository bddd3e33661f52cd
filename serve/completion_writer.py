"""The completion rows' writer: one thread that commits the rows of the replies that end meanwhile together.

Every streamed reply stores its completion row before the client sees its end (so feedback on its id never
races the row). A thread hop per row (`asyncio.to_thread`) costs the event loop more than the write itself
when the loop is busy: the worker and the loop hand the GIL back and forth around every SQLite call. Here
one long-lived thread takes every row queued while it was writing and commits them in one transaction
(group commit: under load, one hop and one commit serve many replies), then settles their futures with one
call into the loop. A batch that fails is written again row by row, so one bad row fails only its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence

from serve.store import Completion

log = logging.getLogger("empathy.serve")

_Item = tuple[Completion, "asyncio.Future[None]"]


class CompletionWriter:
    """Writes completion rows with `write` (e.g. `Store.add_completions`) on a thread of its own, for the
    event loop `loop`; `add` returns when the row is committed (or raises the write's error)."""

    def __init__(self, write: Callable[[Sequence[Completion]], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        self._write, self._loop = write, loop
        self._queue: list[_Item] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="empathy-completion-writer", daemon=True)

    def start(self) -> CompletionWriter:
        self._thread.start()
        return self

    async def add(self, row: Completion) -> None:
        future: asyncio.Future[None] = self._loop.create_future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the completion writer is closed (the gateway is shutting down)")
            self._queue.append((row, future))
            self._wake.notify()
        await future

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread (blocking: call it off the event loop)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                batch, self._queue = self._queue, []
            if batch:
                self._settle(batch, self._commit([row for row, _ in batch]))
            elif self._closed:
                return

    def _commit(self, rows: list[Completion]) -> list[BaseException | None]:
        """The error of each row (None: stored): one transaction, or row by row when it fails."""
        try:
            self._write(rows)
            return [None] * len(rows)
        except Exception as exc:
            if len(rows) == 1:
                return [exc]
            log.warning("a batch of %d completion rows failed (%s); writing them one by one", len(rows), exc)
        return [self._commit([row])[0] for row in rows]

    def _settle(self, batch: list[_Item], errors: list[BaseException | None]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these rows any more
            self._loop.call_soon_threadsafe(_resolve, [f for _, f in batch], errors)


def _resolve(futures: list[asyncio.Future[None]], errors: list[BaseException | None]) -> None:
    for future, error in zip(futures, errors, strict=True):
        if future.done():  # the reply was cancelled (its client left): the row is stored all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
