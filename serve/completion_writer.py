"""The completion rows' writer: one thread that commits the rows of the replies that end meanwhile together.

Every streamed reply stores its completion row before the client sees its end (so feedback on its id never
races the row). A thread hop per row (`asyncio.to_thread`) costs the event loop more than the write itself
when the loop is busy: the worker and the loop hand the GIL back and forth around every SQLite call. Here
one long-lived thread takes every row queued while it was writing and commits them in one transaction
(group commit: under load, one hop and one commit serve many replies), then settles their futures with one
call into the loop. A batch that fails is written again row by row, so one bad row fails only its reply.
With an `InlineWrite` (SQLite files), a row is first written on the loop itself when nothing is queued and
SQLite takes it at once; the thread then only writes when the database was locked, and checkpoints the WAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence

from serve.inline_write import InlineWrite
from serve.store import Completion

log = logging.getLogger("empathy.serve")

_Item = tuple[Completion, "asyncio.Future[None]"]


class CompletionWriter:
    """Writes completion rows with `write` (e.g. `Store.add_completions`) on a thread of its own, for the
    event loop `loop`; `add` returns when the row is committed (or raises the write's error)."""

    def __init__(self, write: Callable[[Sequence[Completion]], None], loop: asyncio.AbstractEventLoop,
                 inline: InlineWrite | None = None, checkpoint: Callable[[], None] | None = None) -> None:
        self._write, self._loop = write, loop
        self._inline, self._checkpoint = inline, checkpoint  # checkpoint: after inline.checkpoint_every rows
        self._queue: list[_Item] = []
        self._wake = threading.Condition()
        self._closed = False
        self._checkpoint_due = False
        self._thread = threading.Thread(target=self._run, name="empathy-completion-writer", daemon=True)

    def start(self) -> CompletionWriter:
        self._thread.start()
        return self

    async def add(self, row: Completion) -> None:
        if self._inline is not None and not self._queue and not self._closed and self._inline.write([row]):
            if self._inline.checkpoint_due() and self._checkpoint is not None:
                with self._wake:
                    self._checkpoint_due = True
                    self._wake.notify()
            return
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
        if self._inline is not None:  # on the loop, so never while `add` writes with it there
            with contextlib.suppress(RuntimeError):  # a closed loop: the connection closes when collected
                self._loop.call_soon_threadsafe(self._inline.close)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed and not self._checkpoint_due:
                    self._wake.wait()
                batch, self._queue = self._queue, []
                checkpoint, self._checkpoint_due = self._checkpoint_due, False
            if batch:
                self._settle(batch, self._commit([row for row, _ in batch]))
            if checkpoint:
                self._run_checkpoint()
            if not batch and not checkpoint and self._closed:
                return

    def _run_checkpoint(self) -> None:
        assert self._checkpoint is not None
        try:
            self._checkpoint()
        except Exception as exc:  # the next one (or SQLite's own, by another connection) will do it
            log.warning("checkpointing the store's write-ahead log failed: %s", exc)

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
