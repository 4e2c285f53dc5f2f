"""Local days, ISO weeks and months end at the last microsecond of Asia/Shanghai time.

Sunday 31 May 2026 is the last day of a month and of an ISO week. An incident reported in its
last half millisecond (23:59:59.9995 and 23:59:59.999999 local) belongs to that day, week and
month; one reported at the next midnight belongs to Monday 1 June, a new week and a new month.
SQLite's date functions round a time with a fraction to the millisecond, which once put the
first two in June.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dispatch.db import new_id
from dispatch.schemas import DISPLAY_TZ
from tests.reports.test_report_exactness import Case, Tier, store
from tests.support import World

SUNDAY_NIGHT = datetime(2026, 5, 31, 23, 59, 59, 999_500, tzinfo=DISPLAY_TZ)
REPORTED = [
    SUNDAY_NIGHT,
    SUNDAY_NIGHT.replace(microsecond=999_999),
    SUNDAY_NIGHT + timedelta(microseconds=500),  # Monday 1 June 00:00:00.000000
]


def one_incident(reported: datetime) -> Case:
    arrived = reported + timedelta(seconds=50)
    deadline = reported + timedelta(seconds=60)
    return Case(
        new_id(),
        reported,
        None,
        "fight",
        None,
        tiers=[Tier(1, 60.0, deadline, "met", True, arrived)],
    )


def counted(grouping: dict[str, Any]) -> list[tuple[str, int]]:
    return [(g["key"], g["tiers"][0]["incidents"]) for g in grouping["groups"]]


async def test_the_last_instant_of_a_sunday_at_month_end_stays_in_its_day_week_and_month(
    world: World,
) -> None:
    operator = await world.operator()
    await store(world, [one_incident(at) for at in REPORTED], operator.id)
    auditor = await world.account("auditor")
    reply = await world.http.get(
        "/api/v1/reports/response-times",
        params={
            "from": "2026-05-31",
            "to": "2026-06-02",
            "tier": 1,
            "group_by": ["day", "week", "month"],
        },
        headers=auditor.headers,
    )
    assert reply.status_code == 200, reply.text
    groups = {g["by"]: counted(g) for g in reply.json()["groupings"]}
    assert groups == {
        "day": [("2026-05-31", 2), ("2026-06-01", 1)],
        "week": [("2026-05-25", 2), ("2026-06-01", 1)],  # ISO weeks from Monday
        "month": [("2026-05", 2), ("2026-06", 1)],
    }
