"""The completion writer on both store backends: rows queued within the delay share one commit and `add`
never waits for it, `written()` waits for the rows queued before it (and hurries the thread), a bad row is
lost alone (handed to `lost`), and closing writes what is queued."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import IntegrityError

from serve.completion_writer import CompletionWriter
from serve.store import Completion, Store


def _row(cid: str, model: str | None = "base") -> Completion:
    return Completion(id=cid, model=model, adapter="base", blend=0.5, source="router",  # type: ignore[arg-type]
                      experiment=None, arm=None, subject="s", latency_ms=5.0, ttft_ms=1.0, stream=True,
                      completion_tokens=16)


class Writes:
    """The store's own batch write; the size of every batch is kept."""

    def __init__(self, store: Store) -> None:
        self.store, self.sizes = store, list[int]()

    def __call__(self, rows: Sequence[Completion]) -> None:
        self.sizes.append(len(rows))
        self.store.add_completions(rows)


def test_rows_queued_within_the_delay_share_one_commit(store: Store) -> None:
    async def run() -> tuple[list[int], float]:
        writes = Writes(store)
        writer = CompletionWriter(writes, asyncio.get_running_loop(), delay=0.5).start()
        started = time.perf_counter()
        for i in range(50):
            writer.add(_row(f"g{i}"))  # returns at once: nothing waits for the commit
        queued = time.perf_counter() - started
        await asyncio.sleep(2.0)  # the delay passes: the thread writes the batch by itself
        await asyncio.to_thread(writer.close)
        return writes.sizes, queued

    sizes, queued = asyncio.run(run())
    assert sizes == [50] and queued < 0.5
    assert store.missing_completions([f"g{i}" for i in range(50)]) == []


def test_written_waits_for_the_rows_queued_before_it_and_hurries_the_thread(store: Store) -> None:
    async def run() -> tuple[list[str], float]:
        writer = CompletionWriter(store.add_completions, asyncio.get_running_loop(), delay=60.0).start()
        await writer.written()  # nothing queued: at once
        writer.add(_row("w1"))
        writer.add(_row("w2"))
        started = time.perf_counter()
        await asyncio.wait_for(writer.written(), 10)  # not the 60 s delay
        waited = time.perf_counter() - started
        missing = store.missing_completions(["w1", "w2"])
        await asyncio.to_thread(writer.close)
        return missing, waited

    missing, waited = asyncio.run(run())
    assert missing == [] and waited < 10


def test_a_cancelled_waiter_leaves_the_others_waiting(store: Store) -> None:
    async def run() -> None:
        gate = threading.Event()

        def write(rows: Sequence[Completion]) -> None:
            gate.wait(10)
            store.add_completions(rows)

        writer = CompletionWriter(write, asyncio.get_running_loop(), delay=0.0).start()
        writer.add(_row("c1"))
        gone, staying = asyncio.ensure_future(writer.written()), asyncio.ensure_future(writer.written())
        await asyncio.sleep(0.05)
        gone.cancel()  # its client left
        gate.set()
        await asyncio.wait_for(staying, 10)
        await asyncio.to_thread(writer.close)

    asyncio.run(run())
    assert store.missing_completions(["c1"]) == []


def test_a_bad_row_is_lost_alone(store: Store) -> None:
    lost: list[tuple[str, BaseException]] = []

    async def run() -> None:
        writer = CompletionWriter(store.add_completions, asyncio.get_running_loop(), delay=0.2,
                                  lost=lambda row, exc: lost.append((row.id, exc))).start()
        for row in (_row("ok-1"), _row("bad", model=None), _row("ok-2")):
            writer.add(row)
        await writer.written()
        await asyncio.to_thread(writer.close)

    asyncio.run(run())
    assert [cid for cid, _ in lost] == ["bad"] and isinstance(lost[0][1], IntegrityError)
    assert store.missing_completions(["ok-1", "bad", "ok-2"]) == ["bad"]


def test_close_writes_the_queue_and_refuses_later_rows(store: Store) -> None:
    async def run() -> None:
        writer = CompletionWriter(store.add_completions, asyncio.get_running_loop(), delay=60.0).start()
        writer.add(_row("q1"))
        writer.add(_row("q2"))
        await asyncio.wait_for(asyncio.to_thread(writer.close), 10)  # not the 60 s delay
        with pytest.raises(RuntimeError, match="closed"):
            writer.add(_row("late"))

    asyncio.run(run())
    assert store.missing_completions(["q1", "q2", "late"]) == ["late"]
