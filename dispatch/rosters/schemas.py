from __future__ import annotations

import re
from datetime import date

from pydantic import Field, field_validator
from pydantic.config import JsonDict

from dispatch.rosters.models import MemberRole, RosterKind
from dispatch.schemas import (
    CalendarDate,
    LocalTime,
    Schema,
    WholeNumber,
    strip_name,
    stripped_length,
)

# ASCII digits only: Unicode's \d also matches ٠٨:٠٠ or full-width ０８:００.
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")

# What the service accepts, written into the schema for clients (and the fuzzer); the service
# checks the values itself (rosters.service: normalize_phone, normalize_id_number, and the
# validators below), so the messages and the fields they name stay those of the file import.
# A phone: a mobile number (1, then 3-9, then 9 digits) or a landline (0 and 9-11 digits),
# optionally after +86, with spaces, hyphens and brackets anywhere. Each in ASCII or in its
# full-width form (a Chinese input method's full-width mode), which is stored as ASCII.
_SEP = "[ ()（）\u3000\uff0d-]*"
_DIGIT = "[0-9\uff10-\uff19]"
PHONE_PATTERN = (
    f"^{_SEP}([+\uff0b]{_SEP}[8\uff18]{_SEP}[6\uff16]{_SEP})?"
    f"([1\uff11]{_SEP}[3-9\uff13-\uff19](?:{_SEP}{_DIGIT}){{9}}"
    f"|[0\uff10](?:{_SEP}{_DIGIT}){{9,11}}){_SEP}$"
)
# An 18-character resident ID (the last a digit or X, GB 11643's check digit), or blank; in
# ASCII or full-width.
ID_NUMBER_PATTERN = f"^[ \u3000]*({_DIGIT}{{17}}[0-9Xx\uff10-\uff19\uff38\uff58])?[ \u3000]*$"
HHMM_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _id_number(schema: JsonDict) -> None:
    # The pattern belongs to the string of "string or null".
    options = schema.get("anyOf")
    for option in options if isinstance(options, list) else []:
        if isinstance(option, dict) and option.get("type") == "string":
            option["pattern"] = ID_NUMBER_PATTERN


def _unit_numbers(schema: JsonDict) -> None:
    schema["uniqueItems"] = True
    items = schema.get("items")
    if isinstance(items, dict):
        items.update(minimum=1, maximum=99)


class MemberCreate(Schema):
    kind: RosterKind
    group_name: str = Field(
        min_length=1, max_length=128, description="队伍名称", json_schema_extra=stripped_length(128)
    )
    name: str = Field(min_length=1, max_length=64, json_schema_extra=stripped_length(64))
    phone: str = Field(
        min_length=5,
        max_length=32,
        description="mobile (11 digits, 1[3-9]...) or landline (0 and 9-11 digits) number",
        json_schema_extra={"pattern": PHONE_PATTERN},
    )
    id_number: str | None = Field(
        default=None,
        max_length=32,
        description="18-character resident ID with its check digit, optional",
        json_schema_extra=_id_number,
    )
    role: MemberRole
    unit: WholeNumber | None = Field(default=None, ge=1, le=99)
    site: str | None = Field(
        default=None,
        max_length=128,
        description="所在单位",
        json_schema_extra=stripped_length(128, blank=True),
    )

    # Stripped as every name is (dispatch.schemas.strip_name; a roster file's too) before the
    # lengths above are counted: a name padded with spaces is as long as the name it is (and
    # the schema says so: stripped_length).
    @field_validator("group_name", "name", "site", mode="before")
    @classmethod
    def _stripped(cls, value: object) -> object:
        return strip_name(value) if isinstance(value, str) else value


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
        max_length=5,
        description="local start of the duty hours, HH:MM (Asia/Shanghai)",
        json_schema_extra={"pattern": HHMM_PATTERN},
    )
    end: str = Field(
        max_length=5,
        description="local end, HH:MM; earlier than start crosses midnight; equal is all day",
        json_schema_extra={"pattern": HHMM_PATTERN},
    )
    rotation_weeks: WholeNumber = Field(
        default=1, ge=1, le=2, description="each unit serves 1 or 2 weeks"
    )
    rotation_start: CalendarDate = Field(
        description="local date on which the first unit's turn begins, YYYY-MM-DD"
    )
    units: list[WholeNumber] = Field(
        default_factory=list,
        max_length=50,
        description="unit numbers (1-99, each once) in the order they take turns; empty = the "
        "whole team serves",
        json_schema_extra=_unit_numbers,
    )

    @field_validator("start", "end")
    @classmethod
    def _check_time(cls, value: str) -> str:
        if not _HHMM.fullmatch(value):
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
