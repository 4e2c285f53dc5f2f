"""dispatch_followers: the leaders of a team whose units take turns who follow its dispatch

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 09:00:00.000000

A team whose units take turns alerts only the leaders serving with the unit on turn, but the
incident's news (``incident.updated``, ``chain.breached``) went to every leader of the team, so
an off-turn leader who was not alerted was still woken by each of them. The leaders such a
dispatch's alert went to are now kept (``alerted``), with those who took the dispatch on since
(an off-turn leader's accept or arrival), and the news goes to them alone. A dispatch without
rows here is followed by every leader of its team, as before: the dispatches already stored
keep that.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_followers",
        sa.Column("dispatch_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("alerted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dispatch_id"],
            ["dispatches.id"],
            name=op.f("fk_dispatch_followers_dispatch_id_dispatches"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_dispatch_followers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("dispatch_id", "user_id", name=op.f("pk_dispatch_followers")),
    )


def downgrade() -> None:
    op.drop_table("dispatch_followers")
