"""Shapes shared by every domain: coordinates in, coordinates out, and times as shown."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    StringConstraints,
)
from pydantic.config import JsonDict

from dispatch.errors import InvalidInput
from geo.crs import CRS, to_wgs84
from geo.errors import CoordinateError

# Times are stored in UTC and shown where the users are.
DISPLAY_TZ = ZoneInfo("Asia/Shanghai")


def show_instant(value: datetime) -> str:
    """An instant as the users are shown it: in Asia/Shanghai, RFC 3339. Uncached, for a
    clock's reading shown as it is taken (the server's time in a socket's welcome and pongs),
    an instant never shown again that ``show_time``'s cache would keep in place of one that
    is shown again."""
    try:
        local = value.astimezone(DISPLAY_TZ)
    except OverflowError:
        # At the very ends of the calendar (a device's broken clock): the instant in UTC.
        return value.astimezone(UTC).isoformat()
    offset = local.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        # Before 1901 the zone's offset is local mean time (+08:05:43), which RFC 3339 cannot
        # write: the same instant at the offset rounded to the minute.
        minutes = round(offset / timedelta(minutes=1))
        local = value.astimezone(timezone(timedelta(minutes=minutes)))
    return local.isoformat()


def empty_period(start: datetime, end: datetime, default_end: bool = False) -> InvalidInput:
    """The 422 of a period [from, to) that holds no moment, as the reports and the audit trail
    say it: from=2026-12-07&to=2026-12-07 reads as that day but is empty, so it gives both
    bounds in Beijing time and says that to is excluded."""
    end_said = show_instant(end) + (" (the default: tomorrow 00:00)" if default_end else "")
    return InvalidInput(
        f"from: the period's start must be before its end (from {show_instant(start)}, "
        f"to {end_said}); to is excluded: one day is from=2026-12-07T00:00:00%2B08:00"
        "&to=2026-12-08T00:00:00%2B08:00",
        field="from",
    )


# Cached: a report shows the same few instants many times (every dispatch's alerted_at is its
# reported_at), once for its messages and again for its response.
show_time = functools.lru_cache(maxsize=4096)(show_instant)


LocalTime = Annotated[
    datetime,
    PlainSerializer(show_time, return_type=str, when_used="always"),
    Field(json_schema_extra={"format": "date-time"}),
]


# A number written as digits alone, which pydantic would read as seconds since 1970.
_DIGITS = re.compile(r"\s*[-+]?\d+(\.\d*)?\s*")


# A time whose offset's "+" a URL's query made a space: ``?from=2026-12-07T08:00:00+08:00``
# typed as the server writes its times arrives as "2026-12-07T08:00:00 08:00".
_PLUS_AS_SPACE = re.compile(
    r"\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d*)?)? \d{2}(:?\d{2})?\s*"
)


def _written_as_a_time(value: object) -> object:
    """A time comes as ISO 8601 text: ``from=20260101`` or a bare 12345 are refused, where
    pydantic would read them as seconds since 1970 and answer about 1970-08-23."""
    if isinstance(value, int | float) or (isinstance(value, str) and _DIGITS.fullmatch(value)):
        raise ValueError("write a time in ISO 8601, e.g. 2026-11-30T08:00:00+08:00")
    if isinstance(value, str) and _PLUS_AS_SPACE.fullmatch(value):
        raise ValueError(
            "a URL's query reads + as a space: write the offset's + as %2B "
            "(2026-11-30T08:00:00%2B08:00)"
        )
    return value


def _in_utc(value: datetime) -> datetime:
    """An aware time as the instant it is in UTC, as every stored time is; one that falls
    outside the calendar (years 1 to 9999) once in UTC is refused here, not by the store."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("this time lies outside the years 1 to 9999 in UTC") from None


# A moment from outside (a device's clock, a query's bound): ISO 8601 with its offset, kept as
# the same instant in UTC.
Instant = Annotated[AwareDatetime, BeforeValidator(_written_as_a_time), AfterValidator(_in_utc)]


def _local_instant(value: datetime) -> datetime:
    """A time without offset is Asia/Shanghai's; checked like any instant, kept as given."""
    moment = value.replace(tzinfo=DISPLAY_TZ) if value.tzinfo is None else value
    _in_utc(moment)
    return moment


# A period's bound, where a date or a time without offset means Asia/Shanghai.
LocalOrAware = Annotated[
    datetime, BeforeValidator(_written_as_a_time), AfterValidator(_local_instant)
]
# A date as ISO 8601 writes it: YYYY-MM-DD in ASCII digits.
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _written_as_a_date(value: object) -> object:
    """A date comes as YYYY-MM-DD text: pydantic's lax mode also read the numbers 0 and 86400
    as seconds since 1970 (1970-01-01, 1970-01-02) and "2026-01-01T00:00:00" as a date."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("write a date as YYYY-MM-DD, e.g. 2026-01-05")
    return value


CalendarDate = Annotated[date, BeforeValidator(_written_as_a_date)]
# JSON numbers in bodies: pydantic's lax mode reads true as 1, which put an incident at
# longitude 1 and made a 1 m zone.
Number = Annotated[float, Strict()]
WholeNumber = Annotated[int, Strict()]
# JSON true and false in bodies, as the schema's boolean says: lax, pydantic reads "false",
# "no", "off" and 0 as false, and "yes" and 1 as true.
Flag = Annotated[bool, Strict()]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class LocationIn(Schema):
    """A point as the user has it: phones give WGS84, Chinese web maps GCJ-02 or BD-09."""

    lon: Number = Field(ge=-180, le=180, allow_inf_nan=False, description="longitude, degrees")
    lat: Number = Field(ge=-90, le=90, allow_inf_nan=False, description="latitude, degrees")
    crs: CRS = Field(default=CRS.WGS84, description="coordinate system of lon/lat")

    def to_wgs84(self, field: str = "location") -> tuple[float, float]:
        return wgs84_point(self.lon, self.lat, self.crs, field)


class LocationOut(Schema):
    """A point in WGS84, as stored."""

    lon: float
    lat: float


def wgs84_point(lon: float, lat: float, crs: CRS, field: str | None) -> tuple[float, float]:
    """The point in WGS84. field is the member it came in (``location``), whose ``lon``,
    ``lat`` or ``crs`` an error names; None for the query parameters ``lon``, ``lat``, ``crs``."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        name = field or ("lat" if math.isfinite(lon) else "lon")
        raise InvalidInput(f"{name}: coordinates must be finite numbers", field=name)
    try:
        return to_wgs84(lon, lat, crs)
    except CoordinateError as error:
        name = f"{field}.{error.field}" if field else error.field
        raise InvalidInput(f"{name}: {error.message}", field=name) from None


# A number in a query string, as ASCII digits with an optional sign, point and exponent. float()
# (and so pydantic) also reads "1_14" as 114, which no client means; Unicode's \d also matches
# ١١٤ or full-width １１４.
_PLAIN_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _plain_number(value: object) -> object:
    if isinstance(value, str) and not _PLAIN_NUMBER.fullmatch(value):
        raise ValueError("write a plain decimal number, e.g. 114.159")
    return value


# A coordinate from a query string, written plainly. Its range is given before the check of
# how it is written: pydantic then sets it on the number, and the schema declares it as
# JSON Schema's minimum and maximum. Given after it (on the validator), pydantic checks it as
# well but declares it under its own keys ("ge", "le"), which no client or tool reads.
QueryLongitude = Annotated[
    float, Field(ge=-180, le=180, allow_inf_nan=False), BeforeValidator(_plain_number)
]
QueryLatitude = Annotated[
    float, Field(ge=-90, le=90, allow_inf_nan=False), BeforeValidator(_plain_number)
]


# C0 and C1 control characters, and the bidirectional formatting characters (Unicode's
# Bidi_Control): text that one of them garbles, or reorders so that it reads as something else
# (U+202E shows "abc" as "cba"), on screens, in exports and on printed rosters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Unicode's White_Space, which a name loses at both ends: the characters pydantic's
# strip_whitespace drops too, so a file's names are read as a body's. Not str.strip()'s set,
# which also drops U+001C-U+001F (control characters, refused rather than dropped).
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Characters that show nothing (Unicode's Default_Ignorable_Code_Point, less the variation
# selectors, which pick a glyph of a rare hanzi in a person's name; and the line and paragraph
# separators): inside a name each makes two names that read alike differ, so that a console
# shows two teams in service under one name, or a name that is not the one stored.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200d\u2028\u2029"
    "\u2060-\u2065\u206a-\u206f\u3164\ufeff\uffa0\ufff0-\ufff8"
    # Shorthand format controls, musical formatting, and the tag characters (which can spell
    # a hidden text after a visible one) with the rest of their plane but its selectors.
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e00ff\U000e01f0-\U000e0fff]"
)
# Unicode's noncharacters (U+FDD0-U+FDEF and the last two code points of every plane): no text
# holds them. XML cannot hold U+FFFE and U+FFFF, so that an exported workbook showing a name
# with one is corrupt; the others are as meaningless in a name.
_NONCHARACTER = re.compile(
    "[\ufdd0-\ufdef\ufffe\uffff"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17))
    + "]"
)
# Line breaks and tabs are how people write a longer text.
TEXT_LAYOUT = "\t\n\r"


def control_character(value: str, *, allowed: str = "") -> str | None:
    """The first control character in ``value`` but those ``allowed``, as U+XXXX, or None."""
    for found in _CONTROL.finditer(value):
        if found.group() not in allowed:
            return f"U+{ord(found.group()):04X}"
    return None


def invisible_character(value: str) -> str | None:
    """The first character of ``value`` that shows nothing (_INVISIBLE), as U+XXXX, or None."""
    found = _INVISIBLE.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def noncharacter(value: str) -> str | None:
    """The first noncharacter in ``value`` (_NONCHARACTER), as U+XXXX, or None."""
    found = _NONCHARACTER.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def strip_name(value: str) -> str:
    return value.strip(WHITESPACE)


def name_problem(name: str, max_length: int) -> str | None:
    """What keeps a stripped name from being one (``"contains a control character
    (U+0007)"``), to follow the name's own words; None for a good name."""
    if not name:
        return "must not be blank"
    if len(name) > max_length:
        return f"must be at most {max_length} characters"
    found = control_character(name)
    if found is not None:
        return f"contains a control character ({found})"
    found = invisible_character(name)
    if found is not None:
        return f"contains an invisible character ({found})"
    found = noncharacter(name)
    if found is not None:
        return f"contains a noncharacter ({found})"
    return None


def _stripped(value: object) -> object:
    return strip_name(value) if isinstance(value, str) else value


def _shown_name(value: str) -> str:
    found = control_character(value)
    if found is not None:
        raise ValueError(f"the name contains a control character ({found})")
    found = invisible_character(value)
    if found is not None:
        raise ValueError(f"the name contains an invisible character ({found})")
    found = noncharacter(value)
    if found is not None:
        raise ValueError(f"the name contains a noncharacter ({found})")
    return value


def shown_text(value: str) -> str:
    """A free text others read (an incident's description): lines and tabs, no other control."""
    found = control_character(value, allowed=TEXT_LAYOUT)
    if found is not None:
        raise ValueError(f"the text contains a control character ({found})")
    found = noncharacter(value)
    if found is not None:
        raise ValueError(f"the text contains a noncharacter ({found})")
    return value


def _character_class(characters: str) -> str:
    """``characters`` as the inside of a regex class, in \\u escapes both Python's and
    ECMAScript's (JSON Schema's) read, runs of consecutive code points as ranges."""
    points = sorted({ord(c) for c in characters})
    runs: list[list[int]] = []
    for point in points:
        if runs and runs[-1][1] == point - 1:
            runs[-1][1] = point
        else:
            runs.append([point, point])
    return "".join(
        f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in runs
    )


def stripped_name_pattern(max_length: int, *, blank: bool = False) -> str:
    """The JSON Schema pattern of a name the server strips (strip_name) before it counts its
    length: any whitespace around 1 to ``max_length`` characters (or none, when ``blank``)
    that start and end with something else. A maxLength would count the whitespace too, and
    call a padded name too long that the server takes."""
    space = _character_class(WHITESPACE)
    shown = f"[^{space}]"
    name = f"{shown}(?:[\\s\\S]{{0,{max_length - 2}}}{shown})?"
    if blank:
        name = f"(?:{name})?"
    return f"^[{space}]*{name}[{space}]*$"


def stripped_length(max_length: int, *, blank: bool = False) -> Callable[[JsonDict], None]:
    """A ``json_schema_extra`` that declares a stripped name's length as the server counts it
    (stripped_name_pattern) in place of the maxLength of its constraints."""
    pattern = stripped_name_pattern(max_length, blank=blank)

    def declare(schema: JsonDict) -> None:
        options = schema.get("anyOf")
        # A name or null: the pattern belongs to the string.
        for option in options if isinstance(options, list) else [schema]:
            if isinstance(option, dict) and option.get("type") == "string":
                option.pop("maxLength", None)
                option["pattern"] = pattern

    return declare


# Names and short labels others read (a team's, a user's): surrounding whitespace dropped, as
# the rosters' 队伍名称 is read, then not blank, not too long and without control characters.
# The same rules as name_problem, which the importers apply to a file's names; one alias per
# length, as a Field's max_length does not reach into an Annotated string's constraints.
ShownName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    # Before the constraints above, which it wraps.
    BeforeValidator(_stripped),
    AfterValidator(_shown_name),
    Field(json_schema_extra=stripped_length(128)),
]
ShortName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    # Before the constraints above, which it wraps.
    BeforeValidator(_stripped),
    AfterValidator(_shown_name),
    Field(json_schema_extra=stripped_length(64)),
]
# A free text others read (shown_text): kept as written, lines and tabs allowed.
ShownText = Annotated[str, StringConstraints(max_length=2000), AfterValidator(shown_text)]
