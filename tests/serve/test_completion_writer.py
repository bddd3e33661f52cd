"""The completion writer on both store backends: rows that arrive while it writes share one commit, a bad
row fails only its own reply, a reply whose client left still gets its row, and closing writes what is
queued. On SQLite files a row is written on the loop when the database takes it at once, else by the thread,
which also checkpoints the WAL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from empathy.db import make_engine
from serve.completion_writer import CompletionWriter
from serve.inline_write import InlineWrite, inline_write
from serve.store import Completion, Store


def _row(cid: str, model: str | None = "base") -> Completion:
    return Completion(id=cid, model=model, adapter="base", blend=0.5, source="router",  # type: ignore[arg-type]
                      experiment=None, arm=None, subject="s", latency_ms=5.0, ttft_ms=1.0, stream=True,
                      completion_tokens=16)


class GatedWrites:
    """The store's own batch write, held back until `gate` opens; the size of every batch is kept."""

    def __init__(self, store: Store) -> None:
        self.store, self.sizes, self.gate = store, list[int](), threading.Event()

    def __call__(self, rows: Sequence[Completion]) -> None:
        self.gate.wait(10)
        self.sizes.append(len(rows))
        self.store.add_completions(rows)


async def _queued(writer: CompletionWriter, rows: list[Completion]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.ensure_future(writer.add(r)) for r in rows]
    await asyncio.sleep(0)  # every task has queued its row
    return tasks


def test_rows_that_arrive_during_a_write_share_one_commit(store: Store) -> None:
    async def run() -> list[int]:
        writes = GatedWrites(store)
        writer = CompletionWriter(writes, asyncio.get_running_loop()).start()
        tasks = await _queued(writer, [_row(f"g{i}") for i in range(50)])
        writes.gate.set()
        await asyncio.gather(*tasks)
        await asyncio.to_thread(writer.close)
        return writes.sizes

    sizes = asyncio.run(run())
    assert sum(sizes) == 50 and len(sizes) <= 2  # the first batch, then everything queued behind it
    assert store.missing_completions([f"g{i}" for i in range(50)]) == []


def test_a_bad_row_fails_only_its_own_reply(store: Store) -> None:
    async def run() -> list[BaseException | None]:
        writes = GatedWrites(store)
        writer = CompletionWriter(writes, asyncio.get_running_loop()).start()
        tasks = await _queued(writer, [_row("ok-1"), _row("bad", model=None), _row("ok-2")])
        writes.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(writer.close)
        return [r if isinstance(r, BaseException) else None for r in results]

    errors = asyncio.run(run())
    assert errors[0] is None and errors[2] is None and isinstance(errors[1], IntegrityError)
    assert store.missing_completions(["ok-1", "bad", "ok-2"]) == ["bad"]


def test_a_reply_whose_client_left_still_gets_its_row_and_close_writes_the_queue(store: Store) -> None:
    async def run() -> None:
        writes = GatedWrites(store)
        writer = CompletionWriter(writes, asyncio.get_running_loop()).start()
        left, *others = await _queued(writer, [_row("left"), _row("q1"), _row("q2")])
        left.cancel()  # the client went away while its row waited
        closing = asyncio.ensure_future(asyncio.to_thread(writer.close))
        writes.gate.set()
        await asyncio.gather(*others)
        await closing
        with pytest.raises(RuntimeError, match="closed"):
            await writer.add(_row("late"))

    asyncio.run(run())
    assert store.missing_completions(["left", "q1", "q2", "late"]) == ["late"]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A store on a SQLite file (inline writes exist for those only)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def _inline(store: Store) -> InlineWrite:
    inline = inline_write(store)
    assert inline is not None
    return inline


def test_inline_writes_go_to_sqlite_files_only(store: Store) -> None:
    inline = inline_write(store)
    assert (inline is None) == (store.engine.dialect.name != "sqlite")
    if inline is not None:
        inline.close()
    assert inline_write(Store(make_engine("sqlite://"))) is None  # in memory: another connection, another db


def test_a_row_is_written_on_the_loop_when_sqlite_takes_it_at_once(sqlite_store: Store) -> None:
    store, inline = sqlite_store, _inline(sqlite_store)

    async def run() -> list[int]:
        writes = GatedWrites(store)  # closed: a row that reached the thread would wait 10 s
        writer = CompletionWriter(writes, asyncio.get_running_loop(), inline).start()
        await asyncio.wait_for(writer.add(_row("now")), 2)
        with pytest.raises(IntegrityError):  # a bad row fails its own reply, as in the thread
            await writer.add(_row("bad", model=None))
        writes.gate.set()
        await asyncio.to_thread(writer.close)
        await asyncio.sleep(0)  # closing closes the loop's connection on the loop
        assert inline.closed
        return writes.sizes

    assert asyncio.run(run()) == []  # the thread wrote nothing
    assert store.missing_completions(["now", "bad"]) == ["bad"]


def test_a_locked_database_sends_the_row_to_the_thread_which_waits_for_the_lock(sqlite_store: Store) -> None:
    store, inline = sqlite_store, _inline(sqlite_store)
    holder = sqlite3.connect(store.engine.url.database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer (another gateway on this file) holds the lock

    async def run() -> list[int]:
        writes = GatedWrites(store)
        writes.gate.set()
        writer = CompletionWriter(writes, asyncio.get_running_loop(), inline).start()
        added = asyncio.ensure_future(writer.add(_row("waited")))
        await asyncio.sleep(0.3)
        assert not added.done()  # neither written on the loop nor failed: the thread waits for the lock
        holder.execute("COMMIT")
        await asyncio.wait_for(added, 10)
        await asyncio.to_thread(writer.close)
        return writes.sizes

    assert asyncio.run(run()) == [1]
    assert store.missing_completions(["waited"]) == []


def test_the_thread_checkpoints_the_wal_after_every_n_inline_rows(sqlite_store: Store) -> None:
    store, inline = sqlite_store, _inline(sqlite_store)
    inline.checkpoint_every = 3
    done = threading.Semaphore(0)

    def checkpoint() -> None:
        store.checkpoint()
        done.release()

    async def run() -> list[bool]:
        loop = asyncio.get_running_loop()
        writer = CompletionWriter(store.add_completions, loop, inline, checkpoint).start()
        checkpointed = []
        for i in range(1, 8):  # after each row: was the WAL checkpointed?
            await writer.add(_row(f"c{i}"))
            checkpointed.append(await asyncio.to_thread(done.acquire, timeout=5 if i % 3 == 0 else 0.1))
        await asyncio.to_thread(writer.close)
        return checkpointed

    assert asyncio.run(run()) == [i % 3 == 0 for i in range(1, 8)]
    assert store.missing_completions([f"c{i}" for i in range(1, 8)]) == []
