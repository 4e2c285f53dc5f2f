"""names and texts stored before the checks: stripped, control characters marked

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 09:00:00.000000

Names others read are taken without surrounding whitespace and without control characters or
bidirectional formatting characters, and free texts without control characters but tabs and
line breaks (docs/api.md, "Names and texts"). What was stored before those checks may hold
either: teams' names from before they were stripped (0018 numbered duplicates with the spaces
kept), users' and villages' names with a control character, an RLO (U+202E) in a roster's name
or an incident's description, which shows what follows it backwards in the console, the
exports and on printed rosters. Each is put right here, never silently:

* surrounding whitespace (Unicode's White_Space, as the API drops it) is dropped from names;
* each control or bidirectional formatting character (in a description: but tab, line feed and
  carriage return), and in a name each character that shows nothing (a zero-width space U+200B
  between two characters of 联防队 makes a second name that reads as the first), is replaced by
  U+FFFD (�), which shows where one was. Dropping it would show a name as something it never
  was (a reversed name as the one meant), and keeping it keeps the garbling; the trail holds the
  text as it was;
* a name left blank is （无名称）; a roster's site left blank is none;
* a name the API keeps unique (a team's among those in service, a user's, a village's) that
  another record then has is numbered as 0018 numbers duplicates: （2）, （3）…, the first
  that none has, cut to fit. A record whose name needed nothing keeps it; of changed ones, the
  one created first. A roster of no team (its 队伍名称 is part of its phones' unique key)
  is numbered alike, as a whole;
* a team renamed takes the next revision, as 0018's renames do, its roster (the members of a
  dispatched team, by team_id) is put under the new name, and its former names are stripped
  and marked alike.

Each change is an audit_log row (action ``stored_text_cleaned``, actor ``migration 0020``,
target the record) with its table, field, the value as it was and as it is now, and for a
numbered name the record that has the name, so that an admin can give the name meant. A
user's login name that changed is on the trail: the user logs in with the new one.

The audit trail itself is left as it was recorded: no change rewrites it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from alerts.models import JSONType, UTCDateTime

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

# The rules as of this revision (dispatch.schemas): a migration does not follow later changes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u115f\u1160\u17b4\u17b5\u200b-\u200d\u2028\u2029\u2060-\u2064"
    "\u206a-\u206f\u3164\ufeff\uffa0\ufff0-\ufff8]"
)
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_TEXT_LAYOUT = "\t\n\r"
MARK = "\ufffd"
NAMELESS = "（无名称）"
ACTOR = "migration 0020"
ACTION = "stored_text_cleaned"

_teams = sa.table(
    "teams",
    sa.column("id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("former_names", JSONType),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
    sa.column("retired_at", UTCDateTime()),
    sa.column("revision", sa.BigInteger()),
)
_users = sa.table(
    "users",
    sa.column("id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("created_at", UTCDateTime()),
)
_villages = sa.table(
    "villages",
    sa.column("id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
_members = sa.table(
    "roster_members",
    sa.column("id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("group_name", sa.String()),
    sa.column("team_id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("site", sa.String()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
_incidents = sa.table(
    "incidents",
    sa.column("id", sa.String()),
    sa.column("description", sa.Text()),
)
_audit = sa.table(
    "audit_log",
    sa.column("at", UTCDateTime()),
    sa.column("actor_name", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target_id", sa.String()),
    sa.column("data", JSONType),
)


def _marked(value: str, allowed: str = "") -> str:
    return _CONTROL.sub(lambda found: found.group() if found.group() in allowed else MARK, value)


def clean_name(value: str) -> str:
    """A stored name as the API would have taken it, a control or invisible character marked:
    never blank."""
    return _INVISIBLE.sub(MARK, _marked(value.strip(_WHITESPACE))) or NAMELESS


def clean_text(value: str) -> str:
    return _marked(value, _TEXT_LAYOUT)


def _numbered(name: str, n: int, max_length: int) -> str:
    suffix = f"（{n}）"
    return name[: max_length - len(suffix)] + suffix


class Change:
    """One field of one record, as it was and as it is now. (Not a dataclass: alembic loads
    this file as no module, which a dataclass's string annotations look up.)"""

    def __init__(
        self,
        table: str,
        target_id: str,
        field: str,
        was: Any,
        now: Any,
        kept_by: str | None = None,
    ) -> None:
        self.table = table
        self.target_id = target_id
        self.field = field
        self.was = was
        self.now = now
        # For a name numbered: the record that has the name.
        self.kept_by = kept_by

    def trail(self, at: datetime) -> dict[str, Any]:
        data = {"table": self.table, "field": self.field, "was": self.was, "now": self.now}
        if self.kept_by is not None:
            data["kept_by"] = self.kept_by
        return {
            "at": at,
            "actor_name": ACTOR,
            "action": ACTION,
            "target_id": self.target_id,
            "data": data,
        }


def unique_names(
    records: Iterable[tuple[str, str]], max_length: int
) -> dict[str, tuple[str, str | None]]:
    """For (id, name) records whose names are one record's each, in the order they were
    created: the ids whose name changes, with the new name and, when it had to be numbered,
    the id of the record that has the name."""
    ordered = list(records)
    holder: dict[str, str] = {}
    for record_id, name in ordered:
        if clean_name(name) == name:
            holder[name] = record_id
    renamed: dict[str, tuple[str, str | None]] = {}
    for record_id, name in ordered:
        clean = clean_name(name)
        if clean == name:
            continue
        new, kept_by = clean, None
        if clean in holder:
            kept_by = holder[clean]
            n = 2
            while _numbered(clean, n, max_length) in holder:
                n += 1
            new = _numbered(clean, n, max_length)
        holder[new] = record_id
        renamed[record_id] = (new, kept_by)
    return renamed


def _former_names(names: list[str], present: str) -> list[str]:
    kept: list[str] = []
    for name in names:
        clean = clean_name(name)
        if clean != present and clean not in kept:
            kept.append(clean)
    return kept


def _teams_cleaned(connection: sa.Connection, now: datetime) -> list[Change]:
    t = _teams.c
    rows = list(
        connection.execute(
            sa.select(t.id, t.name, t.former_names, t.retired_at).order_by(t.created_at, t.id)
        )
    )
    # Unique among the teams in service (uq_teams_active_name); a retired team's name is only
    # cleaned.
    in_service = unique_names(((r.id, r.name) for r in rows if r.retired_at is None), 128)
    changes: list[Change] = []
    newest = connection.scalar(sa.select(sa.func.coalesce(sa.func.max(t.revision), 0))) or 0
    for row in rows:
        name, kept_by = in_service.get(row.id, (clean_name(row.name), None))
        former = list(row.former_names or [])
        former_now = _former_names(former, name)
        if name == row.name and former_now == former:
            continue
        newest += 1
        connection.execute(
            sa.update(_teams)
            .where(t.id == row.id)
            .values(name=name, former_names=former_now, updated_at=now, revision=newest)
        )
        if name != row.name:
            changes.append(Change("teams", row.id, "name", row.name, name, kept_by))
            # The members of a dispatched team are on its roster by team_id, under its name.
            m = _members.c
            connection.execute(
                sa.update(_members).where(m.team_id == row.id).values(group_name=name)
            )
        if former_now != former:
            changes.append(Change("teams", row.id, "former_names", former, former_now))
    return changes


def _unique_names_cleaned(
    connection: sa.Connection, table: sa.TableClause, table_name: str, max_length: int
) -> list[Change]:
    c = table.c
    rows = connection.execute(sa.select(c.id, c.name).order_by(c.created_at, c.id))
    was: dict[str, str] = {}
    records: list[tuple[str, str]] = []
    for record_id, name in rows:
        was[record_id] = name
        records.append((record_id, name))
    changes: list[Change] = []
    for record_id, (name, kept_by) in unique_names(records, max_length).items():
        connection.execute(sa.update(table).where(c.id == record_id).values(name=name))
        changes.append(Change(table_name, record_id, "name", was[record_id], name, kept_by))
    return changes


def _members_cleaned(connection: sa.Connection, now: datetime) -> list[Change]:
    m = _members.c
    rows = list(
        connection.execute(
            sa.select(m.id, m.kind, m.group_name, m.team_id, m.name, m.site).order_by(
                m.created_at, m.id
            )
        )
    )
    # A roster of no team: (kind, 队伍名称, phone) is unique, so two rosters that cleaning
    # would give one name keep apart, the later numbered, as a whole.
    groups: dict[str, dict[str, None]] = {}
    for row in rows:
        if row.team_id is None:
            groups.setdefault(row.kind, {})[row.group_name] = None
    group_names: dict[tuple[str, str], str] = {}
    for kind, names in groups.items():
        renamed = unique_names(((name, name) for name in names), 128)
        for old, (new, _) in renamed.items():
            group_names[(kind, old)] = new
    changes: list[Change] = []
    for row in rows:
        values: dict[str, Any] = {}
        name = clean_name(row.name)
        if name != row.name:
            values["name"] = name
        if row.site is not None:
            stripped = row.site.strip(_WHITESPACE)
            site = _marked(stripped) if stripped else None
            if site != row.site:
                values["site"] = site
        group = group_names.get((row.kind, row.group_name))
        if row.team_id is None and group is not None:
            values["group_name"] = group
        if not values:
            continue
        connection.execute(
            sa.update(_members).where(m.id == row.id).values(**values, updated_at=now)
        )
        for field, new in values.items():
            changes.append(Change("roster_members", row.id, field, getattr(row, field), new))
    return changes


def _descriptions_cleaned(connection: sa.Connection) -> list[Change]:
    i = _incidents.c
    # Read in slices: the incidents are many, the descriptions to change few or none. Each
    # slice is a query of its own, after the last id of the one before: a cursor held open on
    # the server (``yield_per``) stays open on PostgreSQL to the end of the upgrade's
    # transaction and keeps ``incidents`` in use, so a later revision's index on it (0025) was
    # refused in the same transaction.
    changes: list[Change] = []
    last = ""
    while True:
        found = connection.execute(
            sa.select(i.id, i.description)
            .where(i.description.is_not(None), i.id > last)
            .order_by(i.id)
            .limit(1000)
        ).all()
        if not found:
            break
        last = found[-1].id
        for incident_id, description in found:
            clean = clean_text(description)
            if clean != description:
                changes.append(Change("incidents", incident_id, "description", description, clean))
    for change in changes:
        connection.execute(
            sa.update(_incidents).where(i.id == change.target_id).values(description=change.now)
        )
    return changes


def upgrade() -> None:
    connection = op.get_bind()
    now = datetime.now(UTC)
    changes = [
        *_teams_cleaned(connection, now),
        *_unique_names_cleaned(connection, _users, "users", 64),
        *_unique_names_cleaned(connection, _villages, "villages", 128),
        *_members_cleaned(connection, now),
        *_descriptions_cleaned(connection),
    ]
    if not changes:
        return
    connection.execute(sa.insert(_audit), [change.trail(now) for change in changes])
    log.warning(
        "cleaned %d stored name(s) and text(s) of surrounding whitespace or control characters "
        "(each now U+FFFD): see the audit trail, action %s",
        len(changes),
        ACTION,
    )


def downgrade() -> None:
    # The values as they were are on the trail; the checks of the release before would let
    # them in again, but nothing needs them back.
    pass
