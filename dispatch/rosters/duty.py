"""Duty hours and unit rotation: who of a mobile team serves at a given moment, and which of
its leader accounts an alert then goes to.

Everything is in local time (Asia/Shanghai). A shift that crosses midnight belongs to the day it
began, so the night of Sunday 20:00 to Monday 08:00 is Sunday's shift and is served by the unit
whose turn covers that Sunday. Duty hours are half-open: a shift of 08:00-20:00 includes 08:00
and excludes 20:00.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from dispatch.schemas import DISPLAY_TZ

DAY_MINUTES = 24 * 60
# The shifts that have a date: a night shift running early on the first local day began the day
# before, and a moment past the last local day has no date at all.
FIRST_DAY = date.min + timedelta(days=1)
LAST_DAY = date.max


@dataclass(frozen=True)
class Rotation:
    start_minute: int
    end_minute: int
    rotation_weeks: int
    rotation_start: date
    units: Sequence[int]


@dataclass(frozen=True)
class DutyState:
    on_duty: bool
    # Why not: "off_hours" (outside the duty hours) or "unit_empty" (the unit whose turn it is
    # has nobody on the roster). None when on duty.
    reason: str | None
    detail: str
    unit: int | None
    shift_date: date | None


@dataclass(frozen=True, slots=True)
class OnTurn:
    """The unit on turn of a team whose schedule rotates units, at the moment of an alert, and
    the unit of the member each of its linked leader accounts speaks for."""

    unit: int
    # Leader account id -> the unit of its member; an account linked to no member (or to one
    # in no unit) is not here: it answers for every shift.
    leader_units: Mapping[str, int]


def leaders_on_turn(leaders: Sequence[str], on_turn: OnTurn) -> tuple[list[str], bool]:
    """Of a rotating team's enabled ``leaders``, the ones its alert goes to: those linked to a
    member of the unit on turn, and those linked to no unit. If that leaves nobody (every
    leader speaks for an off-turn unit), all of them, and True: an alert is never lost."""
    units = on_turn.leader_units
    chosen = [leader for leader in leaders if units.get(leader, on_turn.unit) == on_turn.unit]
    if chosen or not leaders:
        return chosen, False
    return list(leaders), True


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def judgeable(at: datetime) -> bool:
    """Whether the duty at ``at`` can be told: its local date is FIRST_DAY to LAST_DAY."""
    try:
        local = at.astimezone(DISPLAY_TZ)
    except OverflowError:
        return False
    return local.date() >= FIRST_DAY


def shift_date(rotation: Rotation, at: datetime) -> date | None:
    """The local date on which the shift running at ``at`` began, or None outside duty hours."""
    local = at.astimezone(DISPLAY_TZ)
    # Seconds matter at the edges: 19:59:59.9 is inside an 08:00-20:00 shift, 20:00:00 is not.
    now = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    start, end = rotation.start_minute, rotation.end_minute
    today = local.date()
    if start == end:
        return today if now >= start else today - timedelta(days=1)
    if start < end:
        return today if start <= now < end else None
    if now >= start:
        return today
    if now < end:
        return today - timedelta(days=1)
    return None


def duty_begins(rotation: Rotation, at: datetime) -> datetime | None:
    """The next moment after ``at`` at which the duty hours begin (their start that local day,
    else the next day's); None for a schedule of all day, which never begins, or past the last
    day there is."""
    if rotation.start_minute == rotation.end_minute:
        return None
    local = at.astimezone(DISPLAY_TZ)
    begins = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        minutes=rotation.start_minute
    )
    try:
        # Wall-clock arithmetic: Asia/Shanghai keeps one offset all year.
        return begins if begins > local else begins + timedelta(days=1)
    except OverflowError:
        return None


def unit_on_turn(rotation: Rotation, day: date) -> int | None:
    if not rotation.units:
        return None
    period = (day - rotation.rotation_start).days // (7 * rotation.rotation_weeks)
    return rotation.units[period % len(rotation.units)]


def duty_state(rotation: Rotation, unit_sizes: Mapping[int, int], at: datetime) -> DutyState:
    hours = f"{hhmm(rotation.start_minute)}-{hhmm(rotation.end_minute)}"
    day = shift_date(rotation, at)
    local = at.astimezone(DISPLAY_TZ).strftime("%Y-%m-%d %H:%M:%S")
    if day is None:
        return DutyState(False, "off_hours", f"outside duty hours {hours} (at {local})", None, None)
    unit = unit_on_turn(rotation, day)
    if unit is not None and unit_sizes.get(unit, 0) == 0:
        detail = f"unit {unit} is on turn and has nobody on the roster"
        return DutyState(False, "unit_empty", detail, unit, day)
    on_turn = f", unit {unit} on turn" if unit is not None else ""
    return DutyState(True, None, f"on duty {hours}{on_turn}", unit, day)
