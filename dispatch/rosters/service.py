"""Rosters (花名册), team strength, duty hours and rotation, and the off-duty skip at dispatch."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from sqlalchemy import ColumnElement, Select, delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from alerts.bulk import any_of, on_postgresql
from dispatch.auth import service as auth
from dispatch.auth.models import Role, User
from dispatch.db import dialect_name, new_id, row_values, table_of, upsert_insert, violates_unique
from dispatch.errors import Conflict, Forbidden, InvalidInput, NotFound
from dispatch.incidents.schemas import SkippedTeamOut
from dispatch.rosters import duty
from dispatch.rosters.book import Duties, DutyBook, TeamDuty, duty_changed
from dispatch.rosters.files import (
    CSV_TYPE,
    XLSX_TYPE,
    FileRejected,
    Problem,
    Row,
    Table,
    csv_bytes,
    read_table,
    workbook_bytes,
    write_sheet,
)
from dispatch.rosters.models import (
    KIND_TITLES,
    ROLE_LABELS,
    DutySchedule,
    IncidentSkip,
    MemberRole,
    RosterKind,
    RosterMember,
)
from dispatch.rosters.schemas import (
    DutyIn,
    DutyOut,
    ImportOut,
    MemberCreate,
    MemberOut,
    TeamStrengthOut,
    UnitStrength,
)
from dispatch.schemas import name_problem, strip_name
from dispatch.teams import service as teams
from dispatch.teams.coverage import CoveredBy
from dispatch.teams.models import Team, TeamKind

# The plan (五(一)): a unit is 4-5 people, a team is 3 or more units.
UNIT_MINIMUM = 4
UNITS_MINIMUM = 3
DISPATCHED_KINDS = (TeamKind.FIXED_POST.value, TeamKind.MOBILE.value)
MAX_PROBLEMS = 200

# ---------------------------------------------------------------- validating one member

# ASCII digits only: Unicode's \d also matches ١٢٣ or ১২৩, which int() reads, and a phone stored
# in them is another phone to the one-per-roster rule than the same number in ASCII.
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_LANDLINE = re.compile(r"^0[0-9]{9,11}$")
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9X]$")
# The full-width forms of ASCII (U+FF01-U+FF5E) and the ideographic space, as ASCII: what a
# Chinese input method types in full-width mode (１３８…, Ｘ, －, （）), meaning the plain
# characters. Only these: NFKC would also read ² or ① as a digit, which nobody types for one.
_HALF_WIDTH = str.maketrans(
    {0xFF01 + i: chr(0x21 + i) for i in range(0x7E - 0x21 + 1)} | {0x3000: " "}
)
# An ID number Excel took for a number, as a CSV it saves writes it: 4.41900199003070E+17.
_SCIENTIFIC = re.compile(r"^[0-9]+(\.[0-9]*)?E\+?[0-9]+$")
_TYPED_AS_NUMBER = (
    "{value!r} is stored as a number, of which Excel keeps the first 15 digits alone: format "
    "the column 身份证号码 as text (文本) and type the ID numbers in again"
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CN_DIGITS = {
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_ROLE_BY_TEXT = {
    **{label: role for role, label in ROLE_LABELS.items()},
    **{role.value: role for role in MemberRole},
    # Words the ledgers use for the same roles.
    "保安": MemberRole.GUARD,
    "物管员": MemberRole.GUARD,
    "辅警": MemberRole.AUXILIARY_POLICE_DRIVER,
    "成员": MemberRole.MEMBER,
    "信息员": MemberRole.MEMBER,
    "联防员": MemberRole.MEMBER,
}


class RowError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def shown_name(values: dict[str, str], field: str, label: str, max_length: int) -> str:
    """A name of the row as the API takes one (dispatch.schemas.name_problem): stripped, not
    blank, not too long, without control characters. Names are shown, exported and printed:
    a control character in one is a copying mistake or an attempt to garble what others see."""
    name = strip_name(values.get(field, ""))
    problem = name_problem(name, max_length)
    if problem is not None:
        raise RowError(field, f"the {label} {problem}")
    return name


# What may stand between a phone's digits once its full-width forms are read as ASCII, as the
# schema's PHONE_PATTERN says: spaces (ASCII or ideographic), hyphens and brackets. A tab, a
# line break or a no-break space is refused naming it, not dropped unseen.
_PHONE_SEPARATORS = re.compile(r"[ \-()]")


def normalize_phone(value: str) -> str:
    """The number as stored: ASCII digits, full-width ones read as such, without separators or
    +86; any other digit is refused (a number in them would be another number to the rule of
    one phone per roster)."""
    digits = _PHONE_SEPARATORS.sub("", value.translate(_HALF_WIDTH))
    if digits.startswith("+86"):
        digits = digits[3:]
    if _MOBILE.match(digits) or _LANDLINE.match(digits):
        return digits
    other = _other_digit(digits)
    if other is not None:
        raise RowError("phone", f"{value!r} has a digit other than 0-9 ({other})")
    stray = next((c for c in digits if not (c.isdigit() or c == "+")), None)
    if stray is not None:
        raise RowError(
            "phone",
            f"{value!r} has a character other than digits, spaces, hyphens and brackets"
            f" (U+{ord(stray):04X})",
        )
    raise RowError("phone", f"{value!r} is not a mobile (11 digits, 1xx) or landline number")


# A phone a CSV writes as the float a sheet held (pandas, a WPS text export): 13800001111.0.
_PHONE_AS_FLOAT = re.compile(r"([0-9]{7,12})\.0+")
# A phone after the one apostrophe a spreadsheet user types to keep its digits as text.
_APOSTROPHE_DIGITS = re.compile(r"'[0-9]")


def _phone_written_as_number(value: str) -> str:
    """A file's phone as its digits: the whole number a float such as 13800001111.0 is, as
    an .xlsx workbook's phone held as a number is read. One written in scientific notation
    (1.38E+10, Excel's CSV of a narrow column) has lost its digits, and is refused saying so."""
    text = value.translate(_HALF_WIDTH).strip(" ")
    if _APOSTROPHE_DIGITS.match(text):
        # '13800138000: typed so in Excel to keep the digits as text, and kept by some exports.
        text = value = text[1:]
    whole = _PHONE_AS_FLOAT.fullmatch(text)
    if whole is not None:
        return whole.group(1)
    if _SCIENTIFIC.match(text.upper()):
        raise RowError(
            "phone",
            f"{value!r} is a number in scientific notation, which has lost its digits: "
            "format the column 联系电话 as text (文本) and type the numbers in again",
        )
    return value


def normalize_id_number(value: str | None) -> str | None:
    """The number as stored: ASCII digits and X, full-width ones read as such."""
    # Blank, or spaces around it (ASCII or ideographic), as the schema's ID_NUMBER_PATTERN says.
    text = None if value is None else value.translate(_HALF_WIDTH).strip(" ").upper()
    if not text:
        return None
    if not _ID_NUMBER.match(text):
        if _SCIENTIFIC.match(text):
            raise RowError("id_number", _TYPED_AS_NUMBER.format(value=value))
        other = _other_digit(text)
        if other is not None:
            raise RowError("id_number", f"{value!r} has a digit other than 0-9 ({other})")
        raise RowError("id_number", f"{value!r} is not an 18-character resident ID number")
    total = sum(int(d) * w for d, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != text[17]:
        raise RowError("id_number", f"{value!r} fails the ID number's check digit")
    return text


def _other_digit(text: str) -> str | None:
    """The first digit of ``text`` that is not one of 0-9 (٣, ３ once read), as U+XXXX."""
    found = next((c for c in text if c.isdigit() and not c.isascii()), None)
    return None if found is None else f"U+{ord(found):04X}"


def parse_role(value: str) -> MemberRole:
    role = _ROLE_BY_TEXT.get(value.strip())
    if role is None:
        labels = "、".join(ROLE_LABELS.values())
        raise RowError("role", f"{value!r} is not a role; use one of {labels}")
    return role


_UNIT = re.compile(r"^第?\s*([0-9]+|[一二两三四五六七八九十]+)\s*(单元)?$")
# A number of one or two digits in hanzi as it is written: 二, 十, 十二, 二十, 二十三 (and 两 for
# 2 on its own, as in 两单元).
_CN_NUMBER = re.compile("([一二三四五六七八九])?十([一二三四五六七八九])?|([一二两三四五六七八九])")


def parse_unit(value: str) -> int | None:
    text = value.strip()
    if not text:
        return None
    match = _UNIT.match(text.translate(_HALF_WIDTH))
    number = _number(match.group(1)) if match else None
    if number is None or not 1 <= number <= 99:
        raise RowError("unit", f"{text!r} is not a unit number (1-99, e.g. 2 or 第二单元)")
    return number


def _number(text: str) -> int | None:
    """The number ``text`` writes in ASCII digits or hanzi; None when the hanzi are no number
    (十十, 二十三十: read in part, they would put the member in another unit)."""
    if text.isascii():
        return int(text)
    match = _CN_NUMBER.fullmatch(text)
    if match is None:
        return None
    tens, ones, alone = match.groups()
    if alone is not None:
        return _CN_DIGITS[alone]
    return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)


def mask_phone(phone: str) -> str:
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:] if len(phone) > 7 else "*" * len(phone)


def mask_id_number(id_number: str | None) -> str | None:
    if id_number is None:
        return None
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]


def member_out(member: RosterMember, *, reveal: bool) -> MemberOut:
    role = MemberRole(member.role)
    return MemberOut(
        id=member.id,
        kind=RosterKind(member.kind),
        group_name=member.group_name,
        team_id=member.team_id,
        name=member.name,
        phone=member.phone if reveal else mask_phone(member.phone),
        id_number=member.id_number if reveal else mask_id_number(member.id_number),
        role=role,
        role_label=ROLE_LABELS[role],
        unit=member.unit,
        site=member.site,
        user_id=member.user_id,
        created_at=member.created_at,
        updated_at=member.updated_at,
    )


def can_see_identity(viewer: auth.Principal) -> bool:
    """Only admins see phone and ID numbers in full, on screen and in exports."""
    return viewer.role == Role.ADMIN


@dataclass
class _Row:
    line: int
    kind: RosterKind
    group_name: str
    team_id: str | None
    name: str
    phone: str
    id_number: str | None
    role: MemberRole
    unit: int | None
    site: str | None


class _TeamNames:
    """Teams in service by name: the emergency roster's 队伍名称 must name a tier-1 one, as it
    is named now or, in a file written before it was renamed, as it was named then."""

    def __init__(self, found: Sequence[Team]) -> None:
        # Every team in service, by the name that is its own (one team's: uq_teams_active_name).
        self.by_name = {team.name: team for team in found}
        self.by_former_name: dict[str, list[Team]] = {}
        for team in found:
            if team.kind in DISPATCHED_KINDS:
                for name in team.former_names:
                    self.by_former_name.setdefault(name, []).append(team)

    def team(self, name: str) -> Team:
        team = self.by_name.get(name)
        if team is None:
            # A name no team has now: the team that was so named, if only one was.
            renamed = self.by_former_name.get(name, [])
            if len(renamed) > 1:
                now = "、".join(sorted(repr(t.name) for t in renamed))
                raise RowError(
                    "group_name",
                    f"no team is named {name!r} now; {len(renamed)} teams were once so named, "
                    f"now {now}: write the team's name as it is now",
                )
            team = renamed[0] if renamed else None
        if team is None or team.kind not in DISPATCHED_KINDS:
            raise RowError("group_name", f"no fixed-post or mobile team is named {name!r}")
        return team


def _check_member(
    kind: RosterKind,
    line: int,
    values: dict[str, str],
    names: _TeamNames,
) -> _Row:
    group_name = shown_name(values, "group_name", "team (队伍名称)", 128)
    team_id = None
    if kind == RosterKind.EMERGENCY:
        # The member is the team's, under the name the team has now.
        team = names.team(group_name)
        group_name, team_id = team.name, team.id
    name = shown_name(values, "name", "name (姓名)", 64)
    if not values.get("phone", "").strip():
        raise RowError("phone", "the phone number (联系电话) is required")
    phone = normalize_phone(_phone_written_as_number(values["phone"]))
    id_number = normalize_id_number(values.get("id_number"))
    if not values.get("role", "").strip():
        raise RowError("role", "the role (职务) is required")
    role = parse_role(values["role"])
    unit = parse_unit(values.get("unit", ""))
    # Optional: a blank site is none.
    site = (
        shown_name(values, "site", "site (所在单位)", 128)
        if strip_name(values.get("site", ""))
        else None
    )
    return _Row(line, kind, group_name, team_id, name, phone, id_number, role, unit, site)


# ---------------------------------------------------------------- reading and writing members


async def get_member(
    session: AsyncSession, member_id: str, *, for_update: bool = False
) -> RosterMember:
    """``for_update``: for a change to the member, which a removal committed meanwhile would
    leave with no row to write (PostgreSQL: the lock waits for one under way, and then the
    member is not found)."""
    query = select(RosterMember).where(RosterMember.id == member_id)
    if for_update:
        query = query.with_for_update(key_share=True)
    member = await session.scalar(query)
    if member is None:
        raise NotFound(f"roster member {member_id!r} does not exist", field="member_id")
    return member


def _in_service() -> ColumnElement[bool]:
    """Members of a roster in use: of no dispatched team, or of one in service."""
    return RosterMember.team_id.is_(None) | RosterMember.team_id.in_(
        select(Team.id).where(Team.retired_at.is_(None))
    )


async def list_members(
    session: AsyncSession,
    *,
    kind: RosterKind | None,
    team_id: str | None,
    group_name: str | None,
    viewer: auth.Principal,
    in_service: bool = False,
) -> list[RosterMember]:
    """``in_service``: leave out retired teams' members, unless ``team_id`` names one."""
    if viewer.role == Role.LEADER:
        if team_id is not None and team_id != viewer.team_id:
            raise Forbidden("a leader sees only his own team's roster")
        team_id = viewer.team_id
    elif team_id is not None and not await teams.teams_by_id(session, [team_id]):
        # As the reports answer: an unknown team is not a team without members.
        raise NotFound(f"team {team_id!r} does not exist", field="team_id")
    query = select(RosterMember).order_by(
        RosterMember.kind, RosterMember.group_name, RosterMember.unit, RosterMember.name
    )
    if kind is not None:
        query = query.where(RosterMember.kind == kind.value)
    if team_id is not None:
        query = query.where(RosterMember.team_id == team_id)
    if group_name is not None:
        query = query.where(RosterMember.group_name == group_name)
    if in_service and team_id is None:
        query = query.where(_in_service())
    return list(await session.scalars(query))


async def create_member(
    session: AsyncSession, data: MemberCreate, now: datetime, book: DutyBook | None = None
) -> RosterMember:
    values = {
        "group_name": data.group_name,
        "name": data.name,
        "phone": data.phone,
        "id_number": data.id_number or "",
        "role": data.role.value,
        "unit": str(data.unit) if data.unit is not None else "",
        "site": data.site or "",
    }
    names = _TeamNames(await teams.all_teams(session))
    try:
        row = _check_member(data.kind, 0, values, names)
    except RowError as error:
        raise InvalidInput(f"{error.field}: {error.message}", field=error.field) from None
    await _take_turn(session, row.kind)
    if not await _under_names_held(session, [row]):
        raise Conflict(
            f"group_name: the team {row.group_name!r} was retired meanwhile", field="group_name"
        )
    if row.id_number is not None:
        holder = (await _id_number_holders(session, row.kind, [row.id_number])).get(row.id_number)
        if holder is not None:
            raise Conflict(
                f"id_number: {holder.name!r} of {holder.group_name!r} has this ID number on the "
                "roster already",
                field="id_number",
            )
    member = _new_member(row, now)
    if not await _insert_unless_phone_taken(session, member):
        raise Conflict(
            "phone: this team's roster already has a member with that phone", field="phone"
        )
    _duty_changed(session, book)
    return member


# The unique indexes that keep a phone number once per team (RosterMember.__table_args__): a
# dispatched team's by its id, any other roster's team by roster and name.
TEAM_PHONE_INDEX = "uq_roster_members_team_phone"
PHONE_INDEX = "uq_roster_members_kind_group_phone"


def _roster_of(row: _Row | RosterMember) -> str:
    """The team whose roster a member is on: a dispatched team's id, else its 队伍名称."""
    return row.team_id if row.team_id is not None else row.group_name


@dataclass(frozen=True, slots=True)
class _Holder:
    """The member of a roster who has an ID number."""

    roster: str
    name: str
    group_name: str


async def _id_number_holders(
    session: AsyncSession, kind: RosterKind, id_numbers: Sequence[str]
) -> dict[str, _Holder]:
    """Of ``id_numbers``, those a member of the roster ``kind`` has, and who: an ID number is
    one person, on a roster once, as a file's rows have it (``_parse_rows``), so that the
    roster's own export imports back. A retired team's members are left out: its people may
    serve again in a new team of the roster. All the roster's ID numbers are read in one
    query (a town's roster is some thousands), not a parameter for each of a file's."""
    wanted = set(id_numbers)
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            RosterMember.id_number,
            RosterMember.team_id,
            RosterMember.group_name,
            RosterMember.name,
        ).where(RosterMember.kind == kind.value, RosterMember.id_number.is_not(None), _in_service())
    )
    return {
        id_number: _Holder(team_id if team_id is not None else group_name, name, group_name)
        for id_number, team_id, group_name, name in rows
        if id_number in wanted
    }


# Taken by every import to a roster and every member added to it, for its transaction (an
# arbitrary constant, "rosters", and the roster's place in RosterKind after it).
ROSTERS_LOCK = 0x726F737465727300


async def _take_turn(session: AsyncSession, kind: RosterKind) -> None:
    """Imports and members added to one roster take turns: each reads the roster and decides
    from what it read which members are new, which it keeps and which it removes, and whether
    an ID number is free (a rule of the whole roster, which no index keeps). Two imports at
    once for one team each read it before the other wrote, and neither removed the other's
    members: the roster was the union of two files, which neither listed. So each waits
    here, on PostgreSQL, until the one before it has committed, and reads the roster as that
    one left it. Taken before any row lock, and by nothing that holds one, so it cannot be
    part of a deadlock; readers (reports, the duty book) never take it. On SQLite the one
    connection already makes them take turns."""
    if dialect_name(session) == "postgresql":
        key = ROSTERS_LOCK + list(RosterKind).index(kind)
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def _under_names_held(session: AsyncSession, rows: Sequence[_Row]) -> bool:
    """Put the rows of dispatched teams under their teams' names as they are now, held against
    a rename until this transaction ends (a rename renames the roster; one committed since the
    names were read must not leave members under the old name). False if one was retired."""
    team_ids = sorted({r.team_id for r in rows if r.team_id is not None})
    if not team_ids:
        return True
    names = await teams.names_held(session, team_ids)
    for row in rows:
        if row.team_id is not None:
            if row.team_id not in names:
                return False
            row.group_name = names[row.team_id]
    return True


async def _insert_unless_phone_taken(session: AsyncSession, member: RosterMember) -> bool:
    """Insert the member unless the team's roster has the phone, committed or not: race-free
    on both backends (PostgreSQL waits for a transaction that holds it and then skips)."""
    insert = upsert_insert(dialect_name(session))
    if member.team_id is not None:
        statement = insert(table_of(RosterMember)).on_conflict_do_nothing(
            index_elements=["team_id", "phone"], index_where=RosterMember.team_id.is_not(None)
        )
    else:
        statement = insert(table_of(RosterMember)).on_conflict_do_nothing(
            index_elements=["kind", "group_name", "phone"],
            index_where=RosterMember.team_id.is_(None),
        )
    result = await session.execute(statement, row_values(member))
    return bool(getattr(result, "rowcount", 0))


def _phone_taken(error: IntegrityError) -> bool:
    return _violates(error, TEAM_PHONE_INDEX, "team_id", "phone") or _violates(
        error, PHONE_INDEX, "kind", "group_name", "phone"
    )


def _violates(error: IntegrityError, index: str, *columns: str) -> bool:
    return violates_unique(error, index, "roster_members", *columns)


def _new_member(row: _Row, now: datetime) -> RosterMember:
    return RosterMember(
        id=new_id(),
        kind=row.kind.value,
        group_name=row.group_name,
        team_id=row.team_id,
        name=row.name,
        phone=row.phone,
        id_number=row.id_number,
        role=row.role.value,
        unit=row.unit,
        site=row.site,
        user_id=None,
        created_at=now,
        updated_at=now,
    )


async def delete_member(
    session: AsyncSession, member_id: str, book: DutyBook | None = None
) -> None:
    await session.delete(await get_member(session, member_id))
    await session.flush()
    _duty_changed(session, book)


async def link_account(
    session: AsyncSession,
    member_id: str,
    user_id: str | None,
    now: datetime,
    book: DutyBook | None = None,
) -> RosterMember:
    """A leader account speaks for one member of its own team; in a team that rotates units,
    it is alerted while that member's unit is on turn (``duty.leaders_on_turn``)."""
    member = await get_member(session, member_id, for_update=True)
    if user_id is not None:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id!r} does not exist", field="user_id")
        if user.role != Role.LEADER.value:
            raise InvalidInput("user_id: only a leader account links to a member", field="user_id")
        if member.team_id is None or user.team_id != member.team_id:
            raise InvalidInput("user_id: the leader belongs to another team", field="user_id")
        taken = await session.scalar(
            select(RosterMember.id).where(
                RosterMember.user_id == user_id, RosterMember.id != member.id
            )
        )
        if taken is not None:
            raise _account_taken()
    member.user_id = user_id
    member.updated_at = now
    try:
        await session.flush()
    except IntegrityError as error:
        # Linked to another member by a request that committed after the check above.
        if _violates(error, "uq_roster_members_user_id", "user_id"):
            raise _account_taken() from None
        raise
    _duty_changed(session, book)
    return member


def _account_taken() -> Conflict:
    return Conflict("user_id: this account is linked to another member", field="user_id")


# ---------------------------------------------------------------- import and export

# Canonical column -> the plan's Chinese header, and other headers the ledgers use for it.
HEADERS: dict[str, tuple[str, ...]] = {
    "seq": ("序号",),
    "group_name": ("队伍名称", "村(社区)", "村（社区）", "所属队伍", "队伍"),
    "unit": ("单元", "所在单元"),
    "name": ("姓名",),
    "role": ("职务", "角色", "岗位"),
    "phone": ("联系电话", "手机号码", "电话", "手机"),
    "id_number": ("身份证号码", "身份证号"),
    "site": ("所在单位", "所属单位", "单位"),
}
# The same columns headed in English (compared without case, spaces, "_", "-" and "."), as a
# roster kept for a bilingual office, or the template's second header line, has them.
ENGLISH_HEADERS: dict[str, tuple[str, ...]] = {
    "seq": ("no", "seq", "serialnumber"),
    "group_name": ("team", "teamname", "group", "groupname", "village", "community"),
    "unit": ("unit", "unitno"),
    "name": ("name", "fullname"),
    "role": ("role", "position", "duty", "post"),
    "phone": ("phone", "phoneno", "phonenumber", "mobile", "mobilephone", "tel", "telephone"),
    "id_number": ("id", "idno", "idnumber", "idcard", "idcardnumber"),
    "site": ("site", "workplace", "employer", "company", "workunit"),
}
COLUMNS: dict[RosterKind, tuple[str, ...]] = {
    RosterKind.EMERGENCY: (
        "seq",
        "group_name",
        "unit",
        "name",
        "role",
        "phone",
        "id_number",
        "site",
    ),
    RosterKind.AREA: ("seq", "group_name", "name", "role", "phone", "id_number", "site"),
    # The plan's attachment 4 has no 所在单位; a file may give it (a village's patrol comes from
    # its committee and its enterprises), and what is stored is exported, so that it comes back.
    RosterKind.VILLAGE_PATROL: ("seq", "group_name", "name", "role", "phone", "id_number", "site"),
    RosterKind.WATCH: ("seq", "group_name", "name", "role", "phone", "id_number", "site"),
}
REQUIRED = ("group_name", "name", "role", "phone")
# The export's column widths (in characters).
WIDTHS = {
    "seq": 6,
    "group_name": 28,
    "unit": 8,
    "name": 12,
    "role": 12,
    "phone": 16,
    "id_number": 22,
    "site": 28,
}


def header_label(kind: RosterKind, column: str) -> str:
    if kind == RosterKind.VILLAGE_PATROL and column == "group_name":
        return "村(社区)"
    return HEADERS[column][0]


# What a header cell has besides its name: spaces of every width (姓　名, padded to the width
# of four characters with an ideographic space), line breaks, and the * of a required column.
_HEADER_PADDING = re.compile(r"[\s*\u3000]+")


def _canonical(text: str) -> str | None:
    cleaned = _HEADER_PADDING.sub("", text)
    for column, names in HEADERS.items():
        if cleaned in names:
            return column
    english = re.sub(r"[_.\-]", "", cleaned.casefold())
    for column, names in ENGLISH_HEADERS.items():
        if english in names:
            return column
    return None


def _has_header(rows: list[Row]) -> bool:
    """Whether a sheet has the roster's header (a cell read as 姓名) in its first five rows."""
    return any(_canonical(cell) == "name" for row in rows if row.line <= 5 for cell in row.cells)


def _find_header(table: Table) -> tuple[int, dict[int, str]]:
    """The header's row number and its columns; a title row above it is allowed."""
    for row in table.rows:
        if row.line > 5:
            break
        columns = {i: c for i, cell in enumerate(row.cells) if (c := _canonical(cell)) is not None}
        if "name" in columns.values():
            missing = [header_label(RosterKind.EMERGENCY, c) for c in REQUIRED]
            missing = [
                m for c, m in zip(REQUIRED, missing, strict=True) if c not in columns.values()
            ]
            if missing:
                raise FileRejected(
                    "the header lacks required columns; nothing was imported",
                    [Problem(row.line, None, f"missing column(s): {'、'.join(missing)}")],
                )
            _refuse_columns_twice(row, columns)
            return row.line, columns
    raise FileRejected(
        "no header row with 姓名 in the first 5 rows; nothing was imported",
        [
            Problem(
                None,
                None,
                "expected a header row such as: "
                + "、".join(HEADERS[c][0] for c in COLUMNS[RosterKind.EMERGENCY]),
            )
        ],
    )


def _refuse_columns_twice(header: Row, columns: dict[int, str]) -> None:
    """Refuse a header with two columns for one field (手机 and 电话, a mobile and an office
    line; 单位 and 所在单位): read as one, the right-most would be taken, whatever the other said.
    Two 序号 are harmless: it is not read."""
    problems: list[Problem] = []
    for field in dict.fromkeys(columns.values()):
        found = [i for i, c in columns.items() if c == field]
        if field != "seq" and len(found) > 1:
            named = " and ".join(f"{header.cells[i]} ({get_column_letter(i + 1)})" for i in found)
            label = header_label(RosterKind.EMERGENCY, field)
            problems.append(
                Problem(header.line, field, f"the columns {named} are both {label}: keep one")
            )
    if problems:
        raise FileRejected(
            "the header has two columns for one field; nothing was imported", problems
        )


def _refuse_numbers_for_text(row: Row, columns: dict[int, str]) -> None:
    """An ID number a workbook holds as a number (typed into a column not formatted as text)
    has only the 15 digits Excel keeps, and zeros after: read as it is, it failed the check
    digit, or (1 in 11) passed it as another person's number."""
    for i, column in columns.items():
        if column == "id_number" and i in row.numbers and row.cells[i]:
            raise RowError("id_number", _TYPED_AS_NUMBER.format(value=row.cells[i]))


def _refuse_unsaved_formulas(row: Row, columns: dict[int, str]) -> None:
    """A formula a script wrote with no value saved (Excel and WPS save one with each formula)
    reads as blank: named as what it is, not as a blank name or phone."""
    for i, column in sorted(columns.items()):
        if i in row.formulas:
            raise RowError(
                column,
                f"cell {get_column_letter(i + 1)}{row.line} holds a formula without a saved "
                "value; open the file in Excel or WPS and save it, then import it again",
            )


def _parse_rows(
    kind: RosterKind, table: Table, names: _TeamNames
) -> tuple[list[_Row], frozenset[str]]:
    """The file's rows, checked, and the fields it has a column for."""
    header_line, columns = _find_header(table)
    rows: list[_Row] = []
    problems: list[Problem] = []
    seen_phone: dict[tuple[str, str], int] = {}
    seen_id: dict[str, int] = {}
    for found in table.filled(below=header_line):
        line, cells = found.line, found.cells
        values = {column: cells[i] for i, column in columns.items() if i < len(cells)}
        unsaved = {i: c for i, c in columns.items() if c != "seq" and i in found.formulas}
        if not any(v for k, v in values.items() if k != "seq") and not unsaved:
            continue
        try:
            _refuse_unsaved_formulas(found, unsaved)
            _refuse_numbers_for_text(found, columns)
            row = _check_member(kind, line, values, names)
        except RowError as error:
            problems.append(Problem(line, error.field, error.message))
            continue
        key = (_roster_of(row), row.phone)
        if key in seen_phone:
            problems.append(Problem(line, "phone", f"repeats the phone of row {seen_phone[key]}"))
            continue
        if row.id_number is not None and row.id_number in seen_id:
            problems.append(
                Problem(line, "id_number", f"repeats the ID number of row {seen_id[row.id_number]}")
            )
            continue
        seen_phone[key] = line
        if row.id_number is not None:
            seen_id[row.id_number] = line
        rows.append(row)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        raise FileRejected(f"{len(problems)} bad row(s); nothing of the file was imported", shown)
    if not rows:
        raise FileRejected("the file has no member rows", [Problem(None, None, "no rows")])
    return rows, frozenset(columns.values())


async def import_roster(
    session: AsyncSession,
    kind: RosterKind,
    data: bytes,
    now: datetime,
    book: DutyBook | None = None,
) -> ImportOut:
    """Replace the members of every team the file names; other teams are left alone.

    A dispatched team (the emergency roster's) is the team the name is now, or was before a
    rename; its members are found by the team, whatever name they were written under. A member
    already on the roster (same ID number, or same name and phone) keeps its id and its linked
    account. All rows are checked first: one bad row and nothing is written.
    """
    # Off the event loop: a large workbook takes seconds to read, and alerts must not wait.
    table = await asyncio.to_thread(read_table, data, _has_header)
    names = _TeamNames(await teams.all_teams(session))
    rows, given = _parse_rows(kind, table, names)
    await _take_turn(session, kind)
    if not await _under_names_held(session, rows):
        raise _roster_changed(sorted({r.group_name for r in rows}))
    groups = sorted({r.group_name for r in rows})
    theirs: ColumnElement[bool] = (
        RosterMember.team_id.in_(sorted({_roster_of(r) for r in rows}))
        if kind == RosterKind.EMERGENCY
        else RosterMember.team_id.is_(None) & RosterMember.group_name.in_(groups)
    )
    existing = list(
        await session.scalars(select(RosterMember).where(RosterMember.kind == kind.value, theirs))
    )
    _refuse_id_numbers_held(
        rows, await _id_number_holders(session, kind, [r.id_number for r in rows if r.id_number])
    )
    by_id_number = {(_roster_of(m), m.id_number): m for m in existing if m.id_number}
    by_name_phone = {(_roster_of(m), m.name, m.phone): m for m in existing}
    kept: set[str] = set()
    new: list[RosterMember] = []
    # Members whose phone changes (found by ID number), and the phone each gets.
    moved: list[tuple[RosterMember, str]] = []
    for row in rows:
        roster = _roster_of(row)
        match = (row.id_number and by_id_number.get((roster, row.id_number))) or (
            by_name_phone.get((roster, row.name, row.phone))
        )
        if match is None or match.id in kept:
            new.append(_new_member(row, now))
            continue
        kept.add(match.id)
        if match.phone != row.phone:
            # A team's phones are unique at every statement, and two members may swap theirs:
            # each gives its old one up (for its id, which is no phone) before any takes one.
            moved.append((match, row.phone))
            match.phone = match.id
        match.group_name, match.team_id, match.name = row.group_name, row.team_id, row.name
        match.role, match.updated_at = row.role.value, now
        # A field the file has no column for is not blank in it: it says nothing of it (a file
        # laid out as the plan's village roster, without 所在单位, must not erase the sites).
        if "id_number" in given:
            match.id_number = row.id_number
        if "unit" in given:
            match.unit = row.unit
        if "site" in given:
            match.site = row.site
    removed = [m.id for m in existing if m.id not in kept]
    try:
        if removed:
            await session.execute(delete(RosterMember).where(RosterMember.id.in_(removed)))
        await session.flush()
        for member, phone in moved:
            member.phone = phone
        session.add_all(new)
        await session.flush()
    except IntegrityError as error:
        if _phone_taken(error):
            raise _roster_changed(groups) from None
        raise
    except StaleDataError:
        # A member of these teams was removed by another change since the file was read.
        raise _roster_changed(groups) from None
    _duty_changed(session, book)
    return ImportOut(
        kind=kind,
        format=table.format,
        rows=len(rows),
        groups=groups,
        created=len(new),
        updated=len(kept),
        removed=len(removed),
    )


def _refuse_id_numbers_held(rows: Sequence[_Row], holders: dict[str, _Holder]) -> None:
    """Refuse the file if one of its ID numbers is a member's of a team it does not name (the
    members of the teams it names are replaced by its rows)."""
    rosters = {_roster_of(r) for r in rows}
    problems = [
        Problem(
            row.line,
            "id_number",
            f"is the ID number of {holder.name!r} of {holder.group_name!r}, a team the file "
            "does not name: an ID number is on a roster once",
        )
        for row in rows
        if row.id_number is not None
        and (holder := holders.get(row.id_number)) is not None
        and holder.roster not in rosters
    ]
    if problems:
        raise FileRejected(
            f"{len(problems)} bad row(s); nothing of the file was imported",
            problems[:MAX_PROBLEMS],
        )


def _roster_changed(groups: Sequence[str]) -> Conflict:
    return Conflict(
        f"the roster of {'、'.join(groups)} changed while the file was imported; nothing of the "
        "file was written: import it again",
        field="body",
    )


def _export_rows(
    kind: RosterKind, members: Sequence[RosterMember], reveal: bool
) -> list[list[object]]:
    rows: list[list[object]] = []
    for seq, member in enumerate(members, start=1):
        values: dict[str, object] = {
            "seq": seq,
            "group_name": member.group_name,
            "unit": member.unit,
            "name": member.name,
            "role": ROLE_LABELS[MemberRole(member.role)],
            "phone": member.phone if reveal else mask_phone(member.phone),
            "id_number": (member.id_number if reveal else mask_id_number(member.id_number)) or "",
            "site": member.site or "",
        }
        rows.append([values[c] for c in COLUMNS[kind]])
    return rows


async def export_roster(
    session: AsyncSession,
    kind: RosterKind,
    fmt: str,
    *,
    team_id: str | None,
    viewer: auth.Principal,
) -> tuple[bytes, str]:
    # The roster as it can be imported back: a retired team's members stay its own, a record
    # that no file changes (an import knows the teams in service only); its team_id exports it.
    members = await list_members(
        session, kind=kind, team_id=team_id, group_name=None, viewer=viewer, in_service=True
    )
    reveal = can_see_identity(viewer)
    header = [header_label(kind, c) for c in COLUMNS[kind]]
    rows = _export_rows(kind, members, reveal)
    if fmt == "csv":
        return csv_bytes(header, rows), CSV_TYPE
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "花名册"
    widths = [WIDTHS[c] for c in COLUMNS[kind]]
    write_sheet(sheet, header, rows, title=KIND_TITLES[kind], widths=widths)
    # Phone and ID numbers are text: Excel would otherwise show 4.4E+17 and drop digits.
    for row in sheet.iter_rows(min_row=3):
        for cell in row:
            cell.number_format = "@"
    return workbook_bytes(workbook), XLSX_TYPE


# ---------------------------------------------------------------- strength


async def team_strength(session: AsyncSession) -> list[TeamStrengthOut]:
    """Every fixed-post and mobile team against the plan's minimum: 3 units of 4 or more."""
    found = [t for t in await teams.list_teams(session) if t.kind in DISPATCHED_KINDS]
    counts: dict[str, Counter[int | None]] = {t.id: Counter() for t in found}
    rows = await session.execute(
        select(RosterMember.team_id, RosterMember.unit, func.count())
        .where(RosterMember.team_id.in_([t.id for t in found]))
        .group_by(RosterMember.team_id, RosterMember.unit)
    )
    for team_id, unit, count in rows.all():
        if team_id is not None:
            counts[team_id][unit] += count
    return [_strength(t, counts[t.id]) for t in found]


def _strength(team: Team, counts: Counter[int | None]) -> TeamStrengthOut:
    units = [
        UnitStrength(unit=u, members=n, full=n >= UNIT_MINIMUM)
        for u, n in sorted((u, n) for u, n in counts.items() if u is not None)
    ]
    full = sum(1 for u in units if u.full)
    problems: list[str] = []
    if full < UNITS_MINIMUM:
        problems.append(
            f"{full} unit(s) of at least {UNIT_MINIMUM} members; the plan needs {UNITS_MINIMUM}"
        )
    problems += [
        f"unit {u.unit} has {u.members} member(s), fewer than {UNIT_MINIMUM}"
        for u in units
        if not u.full
    ]
    return TeamStrengthOut(
        team_id=team.id,
        team_name=team.name,
        kind=team.kind,
        members=sum(counts.values()),
        units=units,
        full_units=full,
        under_strength=full < UNITS_MINIMUM,
        problems=problems,
    )


# ---------------------------------------------------------------- duty hours and rotation


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _rotation(schedule: DutySchedule) -> duty.Rotation:
    return duty.Rotation(
        schedule.start_minute,
        schedule.end_minute,
        schedule.rotation_weeks,
        schedule.rotation_start,
        tuple(schedule.units),
    )


async def _unit_sizes(session: AsyncSession, team_ids: Sequence[str]) -> dict[str, dict[int, int]]:
    sizes: dict[str, dict[int, int]] = {t: {} for t in team_ids}
    if not team_ids:
        return sizes
    rows = await session.execute(
        select(RosterMember.team_id, RosterMember.unit, func.count())
        .where(RosterMember.team_id.in_(list(team_ids)), RosterMember.unit.is_not(None))
        .group_by(RosterMember.team_id, RosterMember.unit)
    )
    for team_id, unit, count in rows.all():
        if team_id is not None and unit is not None:
            sizes[team_id][unit] = count
    return sizes


async def get_schedule(session: AsyncSession, team_id: str) -> DutySchedule:
    await teams.get_team(session, team_id)
    schedule = await session.get(DutySchedule, team_id)
    if schedule is None:
        raise NotFound(
            f"team {team_id!r} has no duty schedule: it serves round the clock", field="team_id"
        )
    return schedule


async def set_schedule(
    session: AsyncSession,
    team_id: str,
    data: DutyIn,
    now: datetime,
    book: DutyBook | None = None,
) -> DutySchedule:
    # Locked against a change of kind: a team that stops being mobile loses its schedule
    # (teams.update_team), and one set meanwhile would outlive the change.
    team = await teams.get_team(session, team_id, for_update=True)
    if team.kind != TeamKind.MOBILE.value:
        raise InvalidInput(
            "team_id: duty hours and rotation are for mobile teams; fixed posts serve always",
            field="team_id",
        )
    schedule = DutySchedule(
        team_id=team_id,
        start_minute=_minutes(data.start),
        end_minute=_minutes(data.end),
        rotation_weeks=data.rotation_weeks,
        rotation_start=data.rotation_start,
        units=list(data.units),
        updated_at=now,
    )
    # One statement, so that requests at once each write theirs, the last one winning.
    values = row_values(schedule)
    insert = upsert_insert(dialect_name(session))
    statement = insert(table_of(DutySchedule)).values(values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["team_id"],
            set_={k: statement.excluded[k] for k in values if k != "team_id"},
        )
    )
    _duty_changed(session, book)
    return schedule


async def delete_schedule(
    session: AsyncSession, team_id: str, book: DutyBook | None = None
) -> None:
    await session.delete(await get_schedule(session, team_id))
    await session.flush()
    _duty_changed(session, book)


async def duty_out(session: AsyncSession, schedule: DutySchedule, at: datetime) -> DutyOut:
    if not duty.judgeable(at):
        raise InvalidInput(
            f"at: a shift is dated from {duty.FIRST_DAY} to {duty.LAST_DAY} in local time "
            "(Asia/Shanghai); this moment is outside",
            field="at",
        )
    sizes = await _unit_sizes(session, [schedule.team_id])
    state = duty.duty_state(_rotation(schedule), sizes[schedule.team_id], at)
    return DutyOut(
        team_id=schedule.team_id,
        start=duty.hhmm(schedule.start_minute),
        end=duty.hhmm(schedule.end_minute),
        rotation_weeks=schedule.rotation_weeks,
        rotation_start=schedule.rotation_start,
        units=list(schedule.units),
        at=at,
        on_duty=state.on_duty,
        reason=state.reason,
        detail=state.detail,
        unit_on_turn=state.unit,
    )


async def _leader_units(
    session: AsyncSession, team_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Of each team, the leader accounts linked to a member of one of its units: their units."""
    linked: dict[str, dict[str, int]] = {t: {} for t in team_ids}
    if not team_ids:
        return linked
    rows = await session.execute(
        select(RosterMember.team_id, RosterMember.user_id, RosterMember.unit).where(
            RosterMember.team_id.in_(list(team_ids)),
            RosterMember.user_id.is_not(None),
            RosterMember.unit.is_not(None),
        )
    )
    for team_id, user_id, unit in rows.all():
        if team_id is not None and user_id is not None and unit is not None:
            linked[team_id][user_id] = unit
    return linked


async def load_duties(session: AsyncSession, team_ids: Sequence[str] | None = None) -> Duties:
    """The duty of every team in service with a schedule (of ``team_ids``, or of all): three
    queries, one when no team has a schedule. A retired team's schedule stays on record but
    not in the book: each process would otherwise hold every team ever given duty hours."""
    query = (
        select(DutySchedule)
        .join(Team, Team.id == DutySchedule.team_id)
        .where(Team.retired_at.is_(None))
    )
    if team_ids is not None:
        query = query.where(DutySchedule.team_id.in_(list(team_ids)))
    schedules = list(await session.scalars(query))
    if not schedules:
        return {}
    rotating = [s.team_id for s in schedules if s.units]
    sizes = await _unit_sizes(session, rotating)
    # Only a team that rotates units has leaders on and off turn.
    units = await _leader_units(session, rotating)
    return {
        s.team_id: TeamDuty(_rotation(s), sizes.get(s.team_id, {}), units.get(s.team_id, {}))
        for s in schedules
    }


def _duty_changed(session: AsyncSession, book: DutyBook | None) -> None:
    """This process reloads its book once the change commits; the others reload theirs."""
    duty_changed(session, book)


@dataclass(frozen=True, slots=True)
class OnDuty:
    """``split_on_duty``'s answer: the teams to alert, the ones skipped, of the teams to alert
    whose schedule rotates units the unit on turn (whose leaders the alert goes to), and of the
    teams skipped outside their duty hours when those hours next begin."""

    kept: list[CoveredBy]
    skipped: list[SkippedTeamOut]
    on_turn: dict[str, duty.OnTurn]
    # Of the teams skipped outside their duty hours, when those hours next begin.
    begins: dict[str, datetime]


async def split_on_duty(
    session: AsyncSession,
    hits: Sequence[CoveredBy],
    now: datetime,
    book: DutyBook | None = None,
) -> OnDuty:
    """The covering teams on duty at ``now``, and the others with the reason they are skipped.

    A team without a duty schedule is always on duty. From the ``book`` when it is current,
    else three small queries.
    """
    if not hits:
        return OnDuty([], [], {}, {})
    duties = book.current() if book is not None else None
    if duties is None:
        duties = await load_duties(session, [h.team_id for h in hits])
    if not duties:
        return OnDuty(list(hits), [], {}, {})
    kept: list[CoveredBy] = []
    off: list[tuple[CoveredBy, duty.DutyState]] = []
    on_turn: dict[str, duty.OnTurn] = {}
    begins: dict[str, datetime] = {}
    for hit in hits:
        team_duty = duties.get(hit.team_id)
        if team_duty is None:
            kept.append(hit)
            continue
        state = duty.duty_state(team_duty.rotation, team_duty.unit_sizes, now)
        if not state.on_duty:
            off.append((hit, state))
            if state.reason == "off_hours":
                begin = duty.duty_begins(team_duty.rotation, now)
                if begin is not None:
                    begins[hit.team_id] = begin
            continue
        kept.append(hit)
        if state.unit is not None:
            on_turn[hit.team_id] = duty.OnTurn(state.unit, team_duty.leader_units)
    if not off:
        return OnDuty(kept, [], on_turn, {})
    names = {
        t.id: t.name
        for t in (await teams.teams_by_id(session, [h.team_id for h, _ in off])).values()
    }
    skipped = [
        SkippedTeamOut(
            team_id=hit.team_id,
            team_name=names.get(hit.team_id, ""),
            tier=hit.tier,
            reason=state.reason or "off_duty",
            detail=state.detail,
            unit=state.unit,
        )
        for hit, state in off
    ]
    return OnDuty(kept, skipped, on_turn, begins)


def record_skips(
    session: AsyncSession, incident_id: str, skipped: Sequence[SkippedTeamOut], now: datetime
) -> None:
    session.add_all(
        IncidentSkip(
            incident_id=incident_id,
            team_id=s.team_id,
            team_name=s.team_name,
            tier=s.tier,
            reason=s.reason,
            detail=s.detail[:255],
            unit=s.unit,
            at=now,
        )
        for s in skipped
    )


@cache
def _skips_query(postgresql: bool) -> Select[IncidentSkip]:
    # Built once: every incident's view reads its skipped teams.
    return (
        select(IncidentSkip)
        .where(any_of(IncidentSkip.incident_id, "incident_ids", postgresql))
        .order_by(IncidentSkip.tier, IncidentSkip.team_name)
    )


async def skips_for(
    session: AsyncSession, incident_ids: Sequence[str]
) -> dict[str, list[SkippedTeamOut]]:
    found: dict[str, list[SkippedTeamOut]] = {i: [] for i in incident_ids}
    if not incident_ids:
        return found
    rows = await session.scalars(
        _skips_query(on_postgresql(session)), {"incident_ids": list(incident_ids)}
    )
    for row in rows:
        found[row.incident_id].append(SkippedTeamOut.model_validate(row))
    return found
