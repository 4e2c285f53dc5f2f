"""one heartbeat row per server process

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 20:10:00.000000

A process's heartbeat rewrote the presence row of every user connected to it: 10k rows every
10 seconds with 10k leaders connected. It now writes one row, its own; a presence row that
says connected holds while its process's row is fresh. Rows written before have no process
row: they count from their own time, as before, and so go stale as they would have.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alerts.models

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "presence_beats",
        sa.Column("instance", sa.String(length=32), nullable=False),
        sa.Column("seen_at", alerts.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_presence_beats")),
    )


def downgrade() -> None:
    op.drop_table("presence_beats")
