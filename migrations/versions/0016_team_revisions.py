"""teams: a revision per change, for every process's coverage index to catch up on

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 09:00:00.000000

A team moved or retired through one server process was still dispatched by another until the
NOTIFY reached it. Each change of a team now takes the next revision (in commit order), and a
process reads ``max(revision)`` before it decides who covers a point: when that is newer than
its index, it loads the teams changed since. The teams already stored are numbered in the
order they were created; a process starting on them loads them all, and their revisions with
them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_teams = sa.table(
    "teams",
    sa.column("id", sa.String()),
    sa.column("created_at", sa.DateTime()),
    sa.column("revision", sa.BigInteger()),
)


def _number_existing_teams() -> None:
    t = _teams.c
    numbered = sa.select(
        t.id, sa.func.row_number().over(order_by=(t.created_at, t.id)).label("n")
    ).subquery()
    op.get_bind().execute(
        sa.update(_teams).values(
            revision=sa.select(numbered.c.n).where(numbered.c.id == t.id).scalar_subquery()
        )
    )


def upgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.BigInteger(), nullable=True))
    _number_existing_teams()
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.alter_column("revision", existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_index(batch_op.f("ix_teams_revision"), ["revision"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_teams_revision"))
        batch_op.drop_column("revision")
