"""users: what ended the user's tokens last

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 14:40:00.000000

``users.tokens_ended_by`` is set by the disabling ("disabled") or password reset
("password_reset") that ended the user's tokens: a page whose token it ended says which (the
account disabled: ask the administrator; the password reset: log in with the new one). Users
stored before have none: a token they ended is refused as ended by an administrator.

The column can be left unset: the release before keeps writing users on the migrated database
during a rolling upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tokens_ended_by", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("tokens_ended_by")
