"""users: a token generation; revoked_tokens: when the logout was made

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 10:50:00.000000

``users.token_generation`` is counted up by every disabling and password reset and carried in
each token issued since (``gen``): a token of an older generation is refused, even one issued
in the same microsecond as the change (the issue-time comparison let it through). Every user
starts at 0; tokens issued before this release carry none and are judged by their issue time
as before, so they keep working.

``revoked_tokens.revoked_at`` is the logout's time: a record is forgotten a full term
(``DISPATCH_TOKEN_TTL_S`` as set when it is forgotten) after it, not at a term fixed at the
logout. Records from before have none and count from their own expiry, later than their
logout.

Both columns can be left unset: the release before keeps writing users and logouts on the
migrated database during a rolling upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alerts.models

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = alerts.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", UTC_TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_generation")
