"""messages: which ones a resync passed without sending them

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 10:00:00.000000

A resync moves its mailbox's acknowledged mark past messages its socket was never sent, so the
mark alone cannot say whether a leader's phone has an alert: the notifiers asked the dispatch's
``delivered_at`` instead, and a team's other leader's ack made a skipped leader count as
reached. The messages a resync passes that way are now marked (``skipped``), and a user has a
message when the mark passed it unmarked. The messages already stored are left unmarked, as
they were counted before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("skipped", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("skipped")
