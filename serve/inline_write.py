"""Completion rows written on the event loop when SQLite can take them at once.

The writer thread (`serve/completion_writer.py`) costs the gateway 0.2-0.4 ms of CPU per reply on 2 cores:
the hand-off to the thread and back, and the GIL passed to and fro around each SQLite call, which is more than
the write itself (about 50 us: WAL mode without fsync at commit, `synchronous=NORMAL`). So a row is first
written here, on the loop, on a connection of its own that never waits: busy timeout 0, so when another
writer (the thread, another gateway on the same file) holds the lock, SQLite answers "busy" at once and the
row goes to the thread, which waits for the lock as before. This connection never checkpoints the WAL
(that can take milliseconds); the writer thread does, every `checkpoint_every` rows written here (about
1,000 WAL pages, SQLite's own automatic checkpoint size: a row changes the table and its three indexes).
(`bench/proxy_cpu.py`: on the loop, 0.2-0.4 ms of gateway CPU less per reply at c=8.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from serve.store import Completion, Store

_LOCKED = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineWrite:
    """`write(rows)` on the loop: True when committed, False when the database is locked (the caller falls
    back to the writer thread); any other error is raised as the store raises it."""

    def __init__(self, store: Store, checkpoint_every: int = 250) -> None:
        self.store = store
        self.checkpoint_every = checkpoint_every
        self.since_checkpoint = 0
        self._conn = store.engine.raw_connection()
        self._conn.detach()  # its own (closing it closes it): never back in the pool with these settings
        cursor = self._conn.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    def write(self, rows: Sequence[Completion]) -> bool:
        try:
            self.store.write_completions(self._conn, rows)
        except Exception as exc:  # the store re-raises SQLite's errors as SQLAlchemy does
            if getattr(getattr(exc, "orig", None), "sqlite_errorcode", 0) & 0xFF in _LOCKED:
                return False
            raise
        self.since_checkpoint += len(rows)
        return True

    def checkpoint_due(self) -> bool:
        """Whether the WAL should be checkpointed now (then the count starts again)."""
        if self.since_checkpoint < self.checkpoint_every:
            return False
        self.since_checkpoint = 0
        return True

    def close(self) -> None:
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.dbapi_connection is None


def inline_write(store: Store) -> InlineWrite | None:
    """An inline writer for stores on a SQLite file; None for other backends and in-memory databases."""
    url = store.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return InlineWrite(store)
