"""Who cast each pairwise vote, and each completion's reply length in tokens.

Revision ID: 0002
Revises: 0001

`serve_pairwise.voter` (the vote's `user`, else the client's address; NULL for votes stored before) holds
one vote per voter and pair and the daily cap per voter, with an index on (voter, created) for the cap's
count. `serve_completions.completion_tokens` (vLLM's `usage.completion_tokens`; NULL before) feeds the
length-controlled Bradley-Terry of experiment results.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("serve_completions", sa.Column("completion_tokens", sa.Integer, nullable=True))
    op.add_column("serve_pairwise", sa.Column("voter", sa.String(256), nullable=True))
    op.create_index("ix_serve_pairwise_voter_created", "serve_pairwise", ["voter", "created"])


def downgrade() -> None:
    op.drop_index("ix_serve_pairwise_voter_created", table_name="serve_pairwise")
    with op.batch_alter_table("serve_pairwise") as batch:
        batch.drop_column("voter")
    with op.batch_alter_table("serve_completions") as batch:
        batch.drop_column("completion_tokens")
