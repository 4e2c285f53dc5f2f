"""rosters: a dispatched team's members are the team's by its id, under its present name

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 09:00:00.000000

The emergency roster found a team's members by the name they were stored under (队伍名称): a
renamed team left its roster under the old name, an export showed the old name and could not
be imported back, and the same people imported under the new name were added a second time.
Now a member of a dispatched team is on the team's roster by ``team_id``:

* a phone is once per team by a partial unique index on (team_id, phone); the other rosters,
  whose members belong to no team, keep theirs on (kind, group_name, phone);
* the names a team's members were stored under other than the team's present one are kept as
  the team's ``former_names`` (newest first, at most 10), by which a roster file exported
  before a rename still finds the team; then every member is put under its team's present name;
* the same phone twice on one team's roster (a person under the old name and again under the
  new one) is kept once: the member linked to an account, else the one under the team's
  present name, else the one entered first. Each removal is an audit_log row (action
  ``duplicate_member_removed``, actor ``migration 0019``) holding the member in full and the id
  of the one kept, so that an admin can see what went and enter it again if it was somebody
  else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from alerts.models import JSONType, UTCDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)
FORMER_NAMES_KEPT = 10

_teams = sa.table(
    "teams",
    sa.column("id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("former_names", JSONType),
)
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
_OF_A_TEAM = sa.text("team_id IS NOT NULL")
_OF_NO_TEAM = sa.text("team_id IS NULL")


def _keep_former_names(connection: sa.Connection) -> None:
    t, m = _teams.c, _members.c
    found = connection.execute(
        sa.select(m.team_id, m.group_name, sa.func.max(m.created_at).label("last"))
        .join(_teams, t.id == m.team_id)
        .where(m.group_name != t.name)
        .group_by(m.team_id, m.group_name)
    )
    former: dict[str, list[tuple[datetime, str]]] = {}
    for team_id, name, last in found:
        former.setdefault(team_id, []).append((last, name))
    for team_id, names in former.items():
        newest_first = [name for _, name in sorted(names, reverse=True)]
        connection.execute(
            sa.update(_teams)
            .where(t.id == team_id)
            .values(former_names=newest_first[:FORMER_NAMES_KEPT])
        )


def _remove_duplicates(connection: sa.Connection) -> None:
    t, m = _teams.c, _members.c
    repeated = (
        sa.select(m.team_id, m.phone)
        .where(m.team_id.is_not(None))
        .group_by(m.team_id, m.phone)
        .having(sa.func.count() > 1)
        .subquery()
    )
    rows = connection.execute(
        sa.select(_members, t.name.label("team_name"))
        .join(repeated, sa.and_(m.team_id == repeated.c.team_id, m.phone == repeated.c.phone))
        .join(_teams, t.id == m.team_id)
        # Per team and phone: linked to an account, then under the team's name, then earliest.
        .order_by(
            m.team_id,
            m.phone,
            m.user_id.is_(None),
            m.group_name != t.name,
            m.created_at,
            m.id,
        )
    ).mappings()
    kept: dict[tuple[str, str], str] = {}
    removed: list[dict[str, Any]] = []
    for row in rows:
        key = (row["team_id"], row["phone"])
        if key not in kept:
            kept[key] = row["id"]
            continue
        member = {k: v for k, v in row.items() if k not in ("created_at", "team_name")}
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
                "actor_name": "migration 0019",
                "action": "duplicate_member_removed",
                "target_id": member["id"],
                "data": member,
            }
            for member in removed
        ],
    )
    connection.execute(sa.delete(_members).where(m.id.in_([r["id"] for r in removed])))
    log.warning(
        "removed %d roster member(s) whose phone number was already on their team's roster "
        "under another name of the team: see the audit trail, action duplicate_member_removed",
        len(removed),
    )


def upgrade() -> None:
    connection = op.get_bind()
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("former_names", JSONType, nullable=True))
    connection.execute(sa.update(_teams).values(former_names=[]))
    _keep_former_names(connection)
    _remove_duplicates(connection)
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.alter_column("former_names", existing_type=JSONType, nullable=False)
    with op.batch_alter_table("roster_members", schema=None) as batch_op:
        batch_op.drop_index("uq_roster_members_kind_group_phone")
    t, m = _teams.c, _members.c
    connection.execute(
        sa.update(_members)
        .where(m.team_id.is_not(None))
        .values(group_name=sa.select(t.name).where(t.id == m.team_id).scalar_subquery())
    )
    with op.batch_alter_table("roster_members", schema=None) as batch_op:
        batch_op.create_index(
            "uq_roster_members_team_phone",
            ["team_id", "phone"],
            unique=True,
            postgresql_where=_OF_A_TEAM,
            sqlite_where=_OF_A_TEAM,
        )
        batch_op.create_index(
            "uq_roster_members_kind_group_phone",
            ["kind", "group_name", "phone"],
            unique=True,
            postgresql_where=_OF_NO_TEAM,
            sqlite_where=_OF_NO_TEAM,
        )


def downgrade() -> None:
    # The index of 0015 again. It cannot be built while a team in service has a phone on its
    # roster that a retired team of the same name has on its, as this revision allows.
    with op.batch_alter_table("roster_members", schema=None) as batch_op:
        batch_op.drop_index("uq_roster_members_kind_group_phone")
        batch_op.drop_index("uq_roster_members_team_phone")
        batch_op.create_index(
            "uq_roster_members_kind_group_phone", ["kind", "group_name", "phone"], unique=True
        )
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("former_names")
