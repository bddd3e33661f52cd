"""The completion writer on both store backends: rows that arrive while it writes share one commit, a bad
row fails only its own reply, a reply whose client left still gets its row, and closing writes what is
queued."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import IntegrityError

from serve.completion_writer import CompletionWriter
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
