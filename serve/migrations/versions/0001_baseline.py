"""Baseline: the gateway's tables as `create_all` made them before migrations existed.

Revision ID: 0001
Revises: (none)

Idempotent on purpose, so that a database made by that code (no version table) is adopted: tables it lacks
are created, tables it has are checked for the baseline's columns and kept. A frozen copy of the schema
(never import the ORM models here: they move on with later revisions).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from empathy.errors import ConfigError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def baseline_metadata() -> sa.MetaData:
    """The schema of revision 0001 (also used by tests to make a pre-migrations database)."""
    md = sa.MetaData()
    s128, s256, s64 = sa.String(128), sa.String(256), sa.String(64)
    sa.Table("serve_completions", md,
             sa.Column("id", s128, primary_key=True), sa.Column("created", sa.Float, nullable=False),
             sa.Column("model", s128, nullable=False, index=True), sa.Column("adapter", s256, nullable=False),
             sa.Column("blend", sa.Float), sa.Column("source", sa.String(32), nullable=False),
             sa.Column("experiment", s64, index=True), sa.Column("arm", s64), sa.Column("subject", s256),
             sa.Column("latency_ms", sa.Float, nullable=False), sa.Column("ttft_ms", sa.Float),
             sa.Column("stream", sa.Boolean, nullable=False))
    sa.Table("serve_assignments", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("created", sa.Float, nullable=False), sa.Column("experiment", s64, nullable=False),
             sa.Column("subject", s256, nullable=False), sa.Column("arm", s64, nullable=False),
             sa.Index("ix_serve_assignments_exp_subject", "experiment", "subject"))
    sa.Table("serve_ratings", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("created", sa.Float, nullable=False),
             sa.Column("completion_id", s128, sa.ForeignKey("serve_completions.id"), nullable=False,
                       index=True),
             sa.Column("value", sa.Float, nullable=False), sa.Column("scale", sa.String(16), nullable=False))
    sa.Table("serve_pairwise", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("created", sa.Float, nullable=False),
             sa.Column("completion_a", s128, sa.ForeignKey("serve_completions.id"), nullable=False,
                       index=True),
             sa.Column("completion_b", s128, sa.ForeignKey("serve_completions.id"), nullable=False,
                       index=True),
             sa.Column("outcome", sa.String(16), nullable=False))
    sa.Table("serve_experiments", md,
             sa.Column("name", s64, primary_key=True), sa.Column("definition", sa.JSON, nullable=False),
             sa.Column("updated", sa.Float, nullable=False))
    sa.Table("serve_routes", md,
             sa.Column("key", s256, primary_key=True), sa.Column("created", sa.Float, nullable=False),
             sa.Column("adapter", s256, nullable=False), sa.Column("blend", sa.Float),
             sa.Column("probs", sa.JSON))
    return md


def check_adoptable(bind: sa.Connection, md: sa.MetaData) -> None:
    """Existing baseline tables must have the baseline's columns (else they are not ours, or damaged)."""
    inspector = sa.inspect(bind)
    for table in md.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = sorted({c.name for c in table.columns} - have)
        if missing:
            raise ConfigError(f"the store's table {table.name} exists without the columns {missing}: it was "
                              "not made by empathy-router. Point EMPATHY_STORE_URL at another database, or "
                              "rename that table.")


def upgrade() -> None:
    bind = op.get_bind()
    md = baseline_metadata()
    check_adoptable(bind, md)
    md.create_all(bind, checkfirst=True)


def downgrade() -> None:
    baseline_metadata().drop_all(op.get_bind(), checkfirst=True)
