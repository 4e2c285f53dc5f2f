"""presence_beats.stopped_at, notifications.held: the reconnection grace after a restart

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07 18:00:00.000000

``presence_beats.stopped_at`` is when a server process stopped (its sockets, closed for the
restart, are written closed at that moment); ``notifications.held`` says why a notification
was begun later than its alert's check fell due: the leader's phone, connected when its
process stopped or died, was given DISPATCH_NOTIFY_RECONNECT_GRACE_S to reconnect.

Both columns can be left unset: the release before keeps writing both tables on the migrated
database during a rolling upgrade (its processes are then given no grace, as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alerts.models

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("presence_beats", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stopped_at", alerts.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("held")
    with op.batch_alter_table("presence_beats", schema=None) as batch_op:
        batch_op.drop_column("stopped_at")
