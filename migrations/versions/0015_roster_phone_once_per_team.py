"""rosters: a phone number once per team, kept by a unique index

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 09:00:00.000000

The rule was checked before each insert, and two requests at once both passed the check. The
unique index on (kind, group_name, phone) makes the database keep it; it replaces the index on
(kind, group_name), which its leading columns serve as well.

A database may already hold the same phone twice in one team (the race above: the same person
entered twice). Of each such set the member linked to an account is kept, else the one entered
first; the others are deleted, and each deletion is an audit_log row (action
``duplicate_member_removed``, actor ``migration 0015``) holding the removed member in full, so
that an admin can see what went and enter it again if it was someone else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from alerts.models import JSONType, UTCDateTime

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

_members = sa.table(
    "roster_members",
    sa.column("id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("group_name", sa.String()),
    sa.column("team_id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("phone", sa.String()),
    sa.column("id_number", sa.String()),
    sa.column("role", sa.String()),
    sa.column("unit", sa.Integer()),
    sa.column("site", sa.String()),
    sa.column("user_id", sa.String()),
    sa.column("created_at", UTCDateTime()),
)
_audit = sa.table(
    "audit_log",
    sa.column("at", UTCDateTime()),
    sa.column("actor_name", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target_id", sa.String()),
    sa.column("data", JSONType),
)
KEY = ("kind", "group_name", "phone")


def _remove_duplicates(connection: sa.Connection) -> None:
    m = _members.c
    repeated = (
        sa.select(m.kind, m.group_name, m.phone)
        .group_by(m.kind, m.group_name, m.phone)
        .having(sa.func.count() > 1)
        .subquery()
    )
    rows = connection.execute(
        sa.select(_members)
        .join(
            repeated,
            sa.and_(*(getattr(m, c) == getattr(repeated.c, c) for c in KEY)),
        )
        # Per team and phone: the one linked to an account first, then the earliest.
        .order_by(m.kind, m.group_name, m.phone, m.user_id.is_(None), m.created_at, m.id)
    ).mappings()
    kept: dict[tuple[str, str, str], str] = {}
    removed: list[dict[str, Any]] = []
    for row in rows:
        key = (row["kind"], row["group_name"], row["phone"])
        if key not in kept:
            kept[key] = row["id"]
            continue
        member = {k: v for k, v in row.items() if k != "created_at"}
        member["created_at"] = row["created_at"].isoformat()
        removed.append({**member, "kept": kept[key]})
    if not removed:
        return
    now = datetime.now(UTC)
    connection.execute(
        sa.insert(_audit),
        [
            {
                "at": now,
                "actor_name": "migration 0015",
                "action": "duplicate_member_removed",
                "target_id": member["id"],
                "data": member,
            }
            for member in removed
        ],
    )
    connection.execute(sa.delete(_members).where(m.id.in_([r["id"] for r in removed])))
    log.warning(
        "removed %d roster member(s) whose phone number was already on their team's roster: "
        "see the audit trail, action duplicate_member_removed",
        len(removed),
    )


def upgrade() -> None:
    _remove_duplicates(op.get_bind())
    with op.batch_alter_table("roster_members", schema=None) as batch_op:
        batch_op.drop_index("ix_roster_members_kind_group")
        batch_op.create_index("uq_roster_members_kind_group_phone", list(KEY), unique=True)


def downgrade() -> None:
    with op.batch_alter_table("roster_members", schema=None) as batch_op:
        batch_op.drop_index("uq_roster_members_kind_group_phone")
        batch_op.create_index("ix_roster_members_kind_group", ["kind", "group_name"], unique=False)
