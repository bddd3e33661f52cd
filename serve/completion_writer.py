"""The completion rows' writer: rows are written behind the replies, in batches, by one thread.

When a streamed reply ends, its completion row is queued and the reply ends at once. Waiting for the row
cost every reply two cross-thread wake-ups (the writer woken, then the event loop) and about 10% of the
gateway's CPU per reply under load (bench/gateway_overhead.py, issue 16). One long-lived thread waits
`delay` seconds after the first row of a batch (the rows of the replies that end meanwhile join it),
commits the batch in one transaction and counts its rows as written: one wake-up per batch, none per reply.

Reads that must see a reply's row (feedback on its id, an experiment's results) await `written()` first: it
hurries the thread and returns once every row queued before the call is committed, so a client never races
its own row. A batch that fails is written again row by row; a row that still fails is handed to `lost` (its
reply has ended: the gateway logs and counts it). `close` writes what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence

from serve.store import Completion

log = logging.getLogger("empathy.serve")

_Waiter = tuple[int, "asyncio.Future[None]"]  # (rows that must be written, who waits for them)
Lost = Callable[[Completion, BaseException], None]


class CompletionWriter:
    """Writes completion rows with `write` (e.g. `Store.add_completions`) on a thread of its own, `delay`
    seconds after the first row of each batch; `written()` waits for them on the event loop `loop`."""

    def __init__(self, write: Callable[[Sequence[Completion]], None], loop: asyncio.AbstractEventLoop,
                 delay: float = 0.05, lost: Lost | None = None) -> None:
        self._write, self.loop, self.delay, self._lost = write, loop, delay, lost
        self._queue: list[Completion] = []
        self._added = 0  # rows queued so far
        self._done = 0  # rows committed (or lost) so far
        self._waiters: list[_Waiter] = []
        self._hurry = False  # somebody waits: write the batch without waiting `delay`
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="empathy-completion-writer", daemon=True)

    def start(self) -> CompletionWriter:
        self._thread.start()
        return self

    def add(self, row: Completion) -> None:
        """Queue `row` (returns at once; the thread is woken only for the first row of a batch)."""
        with self._wake:
            if self._closed:
                raise RuntimeError("the completion writer is closed (the gateway is shutting down)")
            self._queue.append(row)
            self._added += 1
            if len(self._queue) == 1:
                self._wake.notify()

    async def written(self) -> None:
        """Return once every row queued before this call is committed (or lost)."""
        with self._wake:
            if self._done >= self._added:
                return
            future: asyncio.Future[None] = self.loop.create_future()
            self._waiters.append((self._added, future))
            self._hurry = True
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
                if not self._queue:
                    return
                if not (self._closed or self._hurry):
                    self._wake.wait(self.delay)  # the rows of the replies that end meanwhile join this batch
                batch, self._queue, self._hurry = self._queue, [], False
            self._commit(batch)
            with self._wake:
                self._done += len(batch)
                ready = [f for target, f in self._waiters if target <= self._done]
                self._waiters = [(t, f) for t, f in self._waiters if t > self._done]
            if ready:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    self.loop.call_soon_threadsafe(_release, ready)

    def _commit(self, rows: list[Completion]) -> None:
        """One transaction, or row by row when it fails; a row that cannot be written goes to `lost`."""
        try:
            self._write(rows)
            return
        except Exception as exc:
            if len(rows) == 1:
                self._lose(rows[0], exc)
                return
            log.warning("a batch of %d completion rows failed (%s); writing them one by one", len(rows), exc)
        for row in rows:
            self._commit([row])

    def _lose(self, row: Completion, exc: BaseException) -> None:
        log.error("completion row %s was not stored: %s: %s", row.id, type(exc).__name__, exc)
        if self._lost is not None:
            self._lost(row, exc)


def _release(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # the waiting request was cancelled (its client left)
            future.set_result(None)
