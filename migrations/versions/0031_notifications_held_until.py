"""notifications.held_until: until when a notification was held, as a time

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07 22:00:00.000000

``notifications.held`` says in English why a notification was begun late (the leader's phone
was given DISPATCH_NOTIFY_RECONNECT_GRACE_S to reconnect after a restart); the pages had to
read the grace out of that sentence. ``held_until`` is the end of that grace, a time (UTC)
the API, the board and the pages give and show as they do every other.

A row held before it is filled in from its sentence, which has always begun ``held until
<ISO 8601 time>:``; one whose sentence does not read so is left null (shown as held, with no
time). The release before keeps writing notifications on the migrated database during a
rolling upgrade, leaving it null.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

import alerts.models

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HELD_UNTIL = re.compile(r"held until (\S+?):\s")

_notifications = sa.table(
    "notifications",
    sa.column("id", sa.String()),
    sa.column("held", sa.Text()),
    sa.column("held_until", alerts.models.UTCDateTime(timezone=True)),
)


def held_until(held: str | None) -> datetime | None:
    """The time a ``held`` sentence begins with, or None if it does not begin with one."""
    found = _HELD_UNTIL.match(held or "")
    if found is None:
        return None
    try:
        at = datetime.fromisoformat(found.group(1))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _fill_held_until() -> None:
    bind = op.get_bind()
    n = _notifications.c
    held = bind.execute(sa.select(n.id, n.held).where(n.held.is_not(None))).all()
    for notification_id, text in held:
        at = held_until(text)
        if at is not None:
            bind.execute(
                sa.update(_notifications).where(n.id == notification_id).values(held_until=at)
            )


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held_until", alerts.models.UTCDateTime(timezone=True), nullable=True)
        )
    _fill_held_until()


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("held_until")
