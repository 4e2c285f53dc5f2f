from __future__ import annotations

import re
from datetime import date

from pydantic import Field, field_validator

from dispatch.rosters.models import MemberRole, RosterKind
from dispatch.schemas import LocalTime, Schema, WholeNumber

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class MemberCreate(Schema):
    kind: RosterKind
    group_name: str = Field(min_length=1, max_length=128, description="队伍名称")
    name: str = Field(min_length=1, max_length=64)
    phone: str = Field(min_length=5, max_length=32)
    id_number: str | None = Field(
        default=None, max_length=32, description="18-character resident ID, optional"
    )
    role: MemberRole
    unit: WholeNumber | None = Field(default=None, ge=1, le=99)
    site: str | None = Field(default=None, max_length=128, description="所在单位")


class MemberOut(Schema):
    id: str
    kind: RosterKind
    group_name: str
    team_id: str | None
    name: str
    phone: str = Field(description="masked (138****5678) for everyone but admins")
    id_number: str | None = Field(description="masked for everyone but admins")
    role: MemberRole
    role_label: str
    unit: int | None
    site: str | None
    user_id: str | None = Field(description="the leader account linked to this member")
    created_at: LocalTime
    updated_at: LocalTime


class AccountLink(Schema):
    user_id: str | None = Field(
        max_length=32, description="a leader account of the member's team; null unlinks"
    )


class ImportOut(Schema):
    kind: RosterKind
    format: str = Field(description="xlsx or csv, as detected from the content")
    rows: int = Field(description="member rows read")
    groups: list[str]
    created: int
    updated: int
    removed: int = Field(description="members of these groups that the file no longer lists")


class UnitStrength(Schema):
    unit: int
    members: int
    full: bool = Field(description="at least the plan's 4 members")


class TeamStrengthOut(Schema):
    team_id: str
    team_name: str
    kind: str
    members: int
    units: list[UnitStrength]
    full_units: int
    under_strength: bool = Field(description="fewer than 3 units of at least 4 members")
    problems: list[str]


class DutyIn(Schema):
    start: str = Field(
        max_length=5, description="local start of the duty hours, HH:MM (Asia/Shanghai)"
    )
    end: str = Field(
        max_length=5,
        description="local end, HH:MM; earlier than start crosses midnight; equal is all day",
    )
    rotation_weeks: WholeNumber = Field(
        default=1, ge=1, le=2, description="each unit serves 1 or 2 weeks"
    )
    rotation_start: date = Field(description="local date on which the first unit's turn begins")
    units: list[WholeNumber] = Field(
        default_factory=list,
        max_length=50,
        description="unit numbers in the order they take turns; empty = the whole team serves",
    )

    @field_validator("start", "end")
    @classmethod
    def _check_time(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("a time of day as HH:MM, 00:00 to 23:59")
        return value

    @field_validator("units")
    @classmethod
    def _check_units(cls, value: list[int]) -> list[int]:
        if any(u < 1 or u > 99 for u in value):
            raise ValueError("unit numbers are 1 to 99")
        if len(set(value)) != len(value):
            raise ValueError("each unit takes one turn per cycle")
        return value


class DutyOut(Schema):
    team_id: str
    start: str
    end: str
    rotation_weeks: int
    rotation_start: date
    units: list[int]
    at: LocalTime = Field(description="the moment the state below is for")
    on_duty: bool
    reason: str | None = Field(description="off_hours or unit_empty when off duty")
    detail: str
    unit_on_turn: int | None
