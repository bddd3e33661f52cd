"""Alembic's environment for the gateway's store: online only, on the connection `migrate` passes in."""

from __future__ import annotations

from alembic import context

from serve.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through serve.migrations.migrate(engine) (it passes the connection)")
context.configure(connection=connection, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
connection.commit()
