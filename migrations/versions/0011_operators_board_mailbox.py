"""the operators' shared board mailbox

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 03:50:00.000000

Operators and admins now read one shared mailbox. It starts past every seq handed out so far,
so a console that resumes from its own old mailbox's seq is told to reload rather than being
replayed someone else's messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BOARD = "board"


def upgrade() -> None:
    op.execute(
        sa.text(
            "INSERT INTO mailboxes (user_id, last_seq, acked_seq) "
            "SELECT :board, COALESCE(MAX(last_seq), 0), 0 FROM mailboxes"
        ).bindparams(board=BOARD)
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM messages WHERE user_id = :board").bindparams(board=BOARD))
    op.execute(sa.text("DELETE FROM mailboxes WHERE user_id = :board").bindparams(board=BOARD))
