"""Versioned schema of the gateway's store (Alembic): `migrate(engine)` creates or upgrades it at start.

Every gateway runs `migrate` when it builds its `Store`, so a gateway of a newer version starts on an older
database and brings it up to date; several gateways starting at once on one PostgreSQL database take turns
(an advisory lock; for SQLite a lock file next to the database). The revision applied is kept in the table
`serve_alembic_version` (its own name, so other tools' Alembic tables in the same database do not collide).

A database made before migrations existed (tables created by `create_all`, no version table) is adopted:
the baseline revision creates only the tables it lacks and checks that the ones it has carry the baseline's
columns (else it stops with a message), then the later revisions run as usual.

How to add a revision (a schema change of `serve/store.py`):
1. Change the ORM model in `serve/store.py`.
2. Add `serve/migrations/versions/NNNN_<what>.py` (copy `script.py.mako`'s shape, or run
   `alembic -c serve/migrations/alembic.ini revision -m "<what>" --rev-id NNNN`): `revision = "NNNN"`,
   `down_revision` = the previous file's revision (a single chain: 0001 -> 0002 -> ...), and `upgrade()` with
   `op.add_column(...)`, `op.create_table(...)`, `op.create_index(...)`. A new NOT NULL column needs a
   `server_default` (existing rows). Write SQLite-safe changes: SQLite cannot ALTER or DROP a column in
   place, so wrap those in `with op.batch_alter_table("serve_x") as batch: ...`. Never edit a revision that
   has shipped; add another one.
3. `tests/serve/test_store_migrations.py` checks, on SQLite and PostgreSQL, that upgrading to head gives
   exactly the ORM's schema (`test_head_matches_the_models`) and that a database at the baseline is
   upgraded by a newer gateway with its rows kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from empathy.errors import ConfigError

log = logging.getLogger("empathy.serve")

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "serve_alembic_version"
_ADVISORY_KEY = 0x656D70617479  # pg_advisory_lock key of the gateway's migrations ("empaty")
_IN_PROCESS = threading.Lock()  # Alembic's `context`/`op` are module globals: one migration at a time


def config(connection: Connection | None = None, extra_locations: list[Path] | None = None) -> Config:
    """An Alembic config over this package (no ini file needed); `extra_locations` add version folders
    (tests add a revision of their own after head)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    locations = [HERE / "versions", *(extra_locations or [])]
    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations))
    cfg.attributes["connection"] = connection
    return cfg


def head(extra_locations: list[Path] | None = None) -> str:
    heads = ScriptDirectory.from_config(config(None, extra_locations)).get_heads()
    if len(heads) != 1:
        raise ConfigError(f"serve/migrations has {len(heads)} heads {heads}: give each revision the one "
                          "before it as down_revision, so the chain is single.")
    return heads[0]


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def migrate(engine: Engine, target: str = "head", extra_locations: list[Path] | None = None) -> None:
    """Create or upgrade the store's schema in `engine`'s database to `target` (default: the newest)."""
    with _exclusive(engine), engine.connect() as conn:
        cfg = config(conn, extra_locations)
        _note_adoption(conn)
        try:
            command.upgrade(cfg, target)
        except CommandError as exc:
            conn.rollback()
            raise ConfigError(f"cannot migrate the store {engine.url.render_as_string()} to {target}: "
                              f"{exc}. The database is at revision {current(engine)}; this gateway knows up "
                              f"to {head()}. A newer gateway migrated it: run that version here too."
                              ) from exc


def _note_adoption(conn: Connection) -> None:
    inspector = inspect(conn)
    tables = inspector.get_table_names()
    if VERSION_TABLE not in tables and any(t.startswith("serve_") for t in tables):
        log.info("store without %s (made before migrations): adopting it at the baseline", VERSION_TABLE)
    conn.rollback()  # leave no transaction open: Alembic begins and commits its own


def sqlite_lock_path(database: str) -> Path:
    """The file that serialises migrations of the SQLite database at `database` (created beside it)."""
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".migrate-lock")


@contextlib.contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    """One migration at a time: in this process, and across gateways sharing the database."""
    with _IN_PROCESS:
        if engine.dialect.name == "postgresql":
            with engine.connect() as lock:
                lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
                lock.commit()
                try:
                    yield
                finally:
                    lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                    lock.commit()
        elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            # flock on a lock file of its own, never the database file: closing any descriptor of the
            # database drops every POSIX lock this process holds on it, SQLite's included (its WAL-mode
            # shared lock); another process's last close then checkpointed and deleted the WAL under our
            # open connections, and their next write was lost.
            with open(sqlite_lock_path(engine.url.database), "ab") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        else:
            yield
