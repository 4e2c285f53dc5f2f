"""teams: a name is one team's while it is in service

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 09:00:00.000000

Two teams in service could have one name: the emergency roster (队伍名称) could then name
neither, and lists and alerts showed two teams alike. A partial unique index now keeps a name
one team's while it is in service; a retired team keeps its name, which may be taken again.

A database may already hold teams in service sharing a name. The one created first keeps it;
each other gets the name with （2）, （3）… after it (the first that no team in service has,
the name cut to leave room within 128 characters), and takes the next revision, as every change
of a team does, so that every process's coverage catches up. Each rename is an audit_log row
(action ``duplicate_team_renamed``, actor ``migration 0018``) with the old name, the new one and
the team that kept it, so that an admin can give the team the name meant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from alerts.models import JSONType, UTCDateTime

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)
MAX_NAME = 128

_teams = sa.table(
    "teams",
    sa.column("id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
    sa.column("retired_at", UTCDateTime()),
    sa.column("revision", sa.BigInteger()),
)
_audit = sa.table(
    "audit_log",
    sa.column("at", UTCDateTime()),
    sa.column("actor_name", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target_id", sa.String()),
    sa.column("data", JSONType),
)
_ACTIVE = sa.text("retired_at IS NULL")


def _numbered(name: str, n: int) -> str:
    suffix = f"（{n}）"
    return name[: MAX_NAME - len(suffix)] + suffix


def _rename_duplicates(connection: sa.Connection) -> None:
    t = _teams.c
    active = list(
        connection.execute(
            sa.select(t.id, t.name).where(t.retired_at.is_(None)).order_by(t.created_at, t.id)
        )
    )
    taken = {name for _, name in active}
    kept: dict[str, str] = {}
    renamed: list[tuple[str, dict[str, Any]]] = []
    for team_id, name in active:
        if name not in kept:
            kept[name] = team_id
            continue
        n = 2
        while _numbered(name, n) in taken:
            n += 1
        new = _numbered(name, n)
        taken.add(new)
        renamed.append((team_id, {"name": new, "was": name, "kept": kept[name]}))
    if not renamed:
        return
    newest = connection.scalar(sa.select(sa.func.coalesce(sa.func.max(t.revision), 0)))
    now = datetime.now(UTC)
    for number, (team_id, change) in enumerate(renamed, start=1):
        connection.execute(
            sa.update(_teams)
            .where(t.id == team_id)
            .values(name=change["name"], updated_at=now, revision=newest + number)
        )
    connection.execute(
        sa.insert(_audit),
        [
            {
                "at": now,
                "actor_name": "migration 0018",
                "action": "duplicate_team_renamed",
                "target_id": team_id,
                "data": change,
            }
            for team_id, change in renamed
        ],
    )
    log.warning(
        "renamed %d team(s) whose name another team in service had: see the audit trail, "
        "action duplicate_team_renamed",
        len(renamed),
    )


def upgrade() -> None:
    _rename_duplicates(op.get_bind())
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.create_index(
            "uq_teams_active_name",
            ["name"],
            unique=True,
            postgresql_where=_ACTIVE,
            sqlite_where=_ACTIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_index("uq_teams_active_name")
