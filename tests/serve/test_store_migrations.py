"""The store's schema is versioned (serve/migrations, Alembic), on a SQLite file and on a real PostgreSQL
server: a fresh database gets exactly the ORM's schema, a database made before migrations existed is adopted
with its rows, a database at the baseline is upgraded by a newer gateway, gateways starting at once on one
database take turns, and a database newer than the gateway is refused with a message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from empathy.db import make_engine
from empathy.errors import ConfigError
from serve import migrations
from serve.store import Base, Completion, Store
from tests.conftest import REPO


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _baseline_metadata() -> Any:
    module = ScriptDirectory.from_config(migrations.config()).get_revision("0001").module
    return module.baseline_metadata()


def _old_rows(engine: Engine) -> None:
    """Rows as the pre-migrations gateway wrote them (columns of the baseline only)."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO serve_completions (id, created, model, adapter, source, latency_ms, "
                          "stream) VALUES ('old-1', 1.0, 'base', 'base', 'fixed', 5.0, false)"))
        conn.execute(text("INSERT INTO serve_ratings (created, completion_id, value, scale) "
                          "VALUES (1.0, 'old-1', 1, 'thumbs')"))


def _assert_old_rows_kept(store: Store) -> None:
    assert store.missing_completions(["old-1"]) == []
    assert store.counts()["serve_ratings"] == 1
    store.add_rating("old-1", 0, "thumbs")  # and the upgraded store takes new rows
    assert store.counts()["serve_ratings"] == 2


def test_head_matches_the_models(engine: Engine) -> None:
    """Upgrading a fresh database to head gives exactly the ORM's tables, columns and indexes: a model change
    without its revision fails here."""
    Store(engine)
    assert migrations.current(engine) == migrations.head()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"serve/store.py and serve/migrations differ: add a revision for {diff}"


def test_pre_migrations_database_is_adopted_with_its_rows(engine: Engine) -> None:
    _baseline_metadata().create_all(engine)  # what `Base.metadata.create_all` made before migrations
    _old_rows(engine)
    store = Store(engine)
    assert migrations.current(engine) == migrations.head()
    _assert_old_rows_kept(store)


def test_older_database_without_a_later_table_is_adopted(engine: Engine) -> None:
    md = _baseline_metadata()
    md.create_all(engine, tables=[t for t in md.sorted_tables if t.name != "serve_routes"])
    Store(engine).put_route("conv", "base", None, None)
    assert migrations.current(engine) == migrations.head()


def test_foreign_table_of_the_same_name_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE serve_routes (key VARCHAR(10) PRIMARY KEY)"))
    with pytest.raises(ConfigError, match=r"serve_routes exists without the columns \['adapter'"):
        Store(engine)
    assert migrations.current(engine) is None


def test_baseline_database_is_upgraded_by_a_newer_gateway(engine: Engine, tmp_path: Path) -> None:
    """A database left at 0001 by an older gateway: the newer one runs every later revision, here the real
    chain up to head and a revision of the test's own after it (a new column, filled for the old rows)."""
    migrations.migrate(engine, "0001")
    _old_rows(engine)
    Store(engine)  # the real chain: 0001 -> head
    assert migrations.current(engine) == migrations.head()
    newer = tmp_path / "versions"
    newer.mkdir()
    (newer / "9001_note.py").write_text(textwrap.dedent(f'''
        import sqlalchemy as sa
        from alembic import op

        revision = "9001"
        down_revision = "{migrations.head()}"


        def upgrade():
            op.add_column("serve_completions", sa.Column("note", sa.String(64), nullable=True))
            op.execute("UPDATE serve_completions SET note = 'from before'")
        '''))
    migrations.migrate(engine, extra_locations=[newer])
    assert migrations.current(engine) == "9001"
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, note FROM serve_completions")).all()
    assert rows == [("old-1", "from before")]
    assert "note" in {c["name"] for c in inspect(engine).get_columns("serve_completions")}


def test_database_newer_than_the_gateway_is_refused(engine: Engine) -> None:
    Store(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'fffe'"))
    with pytest.raises(ConfigError, match=r"at revision fffe.*A newer gateway migrated it"):
        Store(engine)


ADD_ONE = ("import sys; from empathy.db import make_engine; from serve.store import Store; "
           "Store(make_engine(sys.argv[1])).add_completion(__import__('serve.store').store.Completion("
           "sys.argv[2], 'base', 'base', None, 'fixed', None, None, None, 1.0, None, False))")


def _completion(key: str) -> Completion:
    return Completion(key, "base", "base", None, "fixed", None, None, None, 1.0, None, False)


def test_a_migrated_store_keeps_its_writes_when_other_processes_come_and_go(store_url: str) -> None:
    """Regression: the SQLite migration lock once opened and closed the database file itself, which drops
    every POSIX lock of the process on it (SQLite's WAL-mode shared lock too). Another process's last close
    then checkpointed and deleted the WAL under this process's open connection, and a later write was lost
    (1 run in 6 of the test below). Deterministic here: write, let others write and exit, write, count."""
    engine = make_engine(store_url)
    try:
        store = Store(engine)  # migrates, leaving a pooled connection open
        store.add_completion(_completion("mine-1"))
        for key in ("other-1", "other-2"):
            subprocess.run([sys.executable, "-c", ADD_ONE, store_url, key], cwd=REPO, check=True)
            store.add_completion(_completion(key.replace("other", "mine-after")))
    finally:
        engine.dispose()
    engine = make_engine(store_url)
    try:
        assert Store(engine).counts()["serve_completions"] == 5
    finally:
        engine.dispose()


def test_gateways_starting_at_once_take_turns(store_url: str) -> None:
    """Three processes (as three gateways would) create the schema of one fresh database at the same time."""
    procs = [subprocess.Popen([sys.executable, "-c", ADD_ONE, store_url, f"p{i}"], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    engine = make_engine(store_url)
    try:
        assert migrations.current(engine) == migrations.head()
        assert Store(engine).counts()["serve_completions"] == 3
    finally:
        engine.dispose()
