"""Response-time reports against a seeded day whose figures are worked out by hand below.

Four incidents at 09:00 local time on one day, four teams: fixed post A and mobile team B
(tier 1), patrol P (tier 2), response R (tier 3). Times are seconds after each report.

    I1 (fight):  A accepts 10, arrives 50 (met) · P arrives 170 without accepting first (met)
                 · R accepts 100, arrives 300 = exactly the deadline (met) · B never comes ·
                 closed at 310
    I2 (fight):  A accepts 20, arrives 60 = exactly the deadline (met) · B accepts 30, arrives
                 90 (late) · P's phone shows the alert at 25, P never accepts on it, and the
                 operator records P's arrival by radio at 200 (breached) · R never comes ·
                 closed at 400
    I3 (fight):  closed at 30 with nobody on scene: every tier cancelled, none judged
    I4 (theft, in the other village): A arrives 75 without accepting first (breached) ·
                 P arrives 100 (met) and R 250 (met), neither accepting first · B never comes ·
                 left open

Nearest rank: rank(p, n) = ceil(p n / 100).
    tier 1 arrivals [50, 60, 75]: P50 = rank 2 = 60, P90 = rank 3 = 75, max 75; met 2 of 3
    tier 2 arrivals [100, 170, 200]: P50 170, P90 200; met 2 of 3
    tier 3 arrivals [250, 300]: P50 = rank 1 = 250, P90 = rank 2 = 300; met 2 of 3
    Segments are measured between observed hops only. An arrival without an accept first
    implies the accept, and the delivery when no ack came: I1 P, I4 A, P and R each have an
    implied delivery and accept, so none of their segments is measured (each counts as implied
    in all three). An operator's radio arrival implies nothing: I2 P has its delivery (shown at
    25) and no accept, so only its alert to delivery is measured.
    tier-1 dispatches, alert to delivery [10, 20, 30]: P50 = rank 2 = 20, P90 = rank 3 = 30;
    acceptance to arrival [40, 40, 60]: P50 40, P90 60; delivery to acceptance [0, 0, 0] (an
    accept with no websocket ack proves delivery at the same instant); 1 implied in each
    tier 2: alert to delivery [25] (I2 P); nothing else measured; 2 implied in each
    tier 3: alert to delivery [100], delivery to acceptance [0], acceptance to arrival [200]
    (I1 R); 1 implied in each (I4 R)
    exclusions (incident tiers without arrival): I2 tier 3 (breached), I3 tiers 1-3 (cancelled)
    per team: A met 2 / breached 1 / cancelled 1; B met 0 / breached 3 (I1 and I4 nobody
    came, I2 late) / cancelled 1
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import tracemalloc
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from openpyxl.chart import BarChart, ScatterChart
from pyproj import Geod
from sqlalchemy import func, select, update

from dispatch.db import new_id
from dispatch.incidents.models import CATEGORY_LABELS, Category, ChainTier
from dispatch.jobs.models import Job, JobStatus
from dispatch.reports import exports, service
from dispatch.reports.service import TIER_LABELS, rank
from dispatch.schemas import DISPLAY_TZ
from dispatch.teams.models import Team
from tests.reports.test_report_exactness import Case, Hop, Tier, breached_unanswered, store
from tests.support import QINGXI, Account, World, unreadable_parts

GEOD = Geod(ellps="WGS84")
LON, LAT = QINGXI
BORDER = LON + 0.0003  # the two villages meet about 31 m east of the town centre


def near(metres: float, azimuth: float) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(LON, LAT, azimuth, metres)
    return float(lon), float(lat)


@pytest.mark.parametrize(
    ("p", "n", "expected"),
    [(50, 1, 1), (90, 1, 1), (50, 2, 1), (90, 2, 2), (50, 3, 2), (90, 3, 3), (50, 4, 2),
     (90, 4, 4), (90, 10, 9), (90, 11, 10), (50, 10, 5), (90, 20, 18), (90, 21, 19)],
)  # fmt: skip
def test_nearest_rank(p: int, n: int, expected: int) -> None:
    assert rank(p, n) == expected


class Day:
    """The seeded day: ids of teams and incidents, and the accounts that made them."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.teams: dict[str, dict[str, Any]] = {}
        self.leaders: dict[str, Account] = {}
        self.incidents: list[dict[str, Any]] = []
        self.villages: dict[str, str] = {}
        self.operator: Account | None = None

    def dispatch(self, incident: dict[str, Any], team: str) -> str:
        team_id = self.teams[team]["id"]
        found: str = next(d["id"] for d in incident["dispatches"] if d["team_id"] == team_id)
        return found

    async def act(
        self, incident: dict[str, Any], team: str, verb: str, by: Account | None = None
    ) -> None:
        """The team's leader acts on its dispatch, or ``by`` (an operator) on the team's behalf."""
        reply = await self.world.http.post(
            f"/api/v1/dispatches/{self.dispatch(incident, team)}/{verb}",
            headers=(by or self.leaders[team]).headers,
        )
        assert reply.status_code == 200, reply.text

    async def close(self, incident: dict[str, Any], operator: Account) -> None:
        reply = await self.world.http.post(
            f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
        )
        assert reply.status_code == 200, reply.text


def square(west: float, east: float) -> dict[str, Any]:
    south, north = LAT - 0.01, LAT + 0.01
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


async def settle(world: World) -> None:
    now = world.clock.now()
    for _ in range(500):
        async with world.runtime.sessionmaker() as session:
            due = await session.scalar(
                select(func.count())
                .select_from(ChainTier)
                # The timer passes a deadline only once the clock is beyond it.
                .where(ChainTier.status == "pending", ChainTier.deadline < now)
            )
            jobs = await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status == JobStatus.PENDING.value, Job.due_at <= now)
            )
        if not due and not jobs:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the timers never caught up")


async def seed(world: World) -> Day:
    world.long_logins()
    day = Day(world)
    admin = await world.admin()
    villages = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": name}, "geometry": square(west, east)}
            for name, west, east in (
                ("上元村", LON - 0.01, BORDER),
                ("下仙社区", BORDER, LON + 0.01),
            )
        ],
    }
    reply = await world.http.post(
        "/api/v1/villages/import", content=json.dumps(villages), headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    listed = (await world.http.get("/api/v1/villages", headers=admin.headers)).json()
    day.villages = {v["name"]: v["id"] for v in listed}
    day.teams = {
        "A": await world.team("fixed_post", name="A驻点队"),
        "B": await world.team("mobile", *near(300, 270), name="B机动队"),
        "P": await world.team("patrol", radius_m=3000, name="P巡逻警力"),
        "R": await world.team("response", radius_m=6000, name="R处突警力"),
    }
    day.leaders = {k: await world.leader(t) for k, t in day.teams.items()}
    operator = day.operator = await world.operator()

    # Start at 09:00 local time, so that the whole seeded day is one local date.
    now = world.clock.now().astimezone(DISPLAY_TZ)
    nine = now.replace(hour=9, minute=0, second=0, microsecond=0)
    if nine <= now:
        nine += timedelta(days=1)
    world.clock.advance((nine - now).total_seconds())

    async def at(start: datetime, offset: float) -> None:
        # Moves the clock to exactly ``offset`` seconds after the report at ``start``, then lets
        # the server's timers finish what fell due, so each step is the only thing going on.
        target = start + timedelta(seconds=offset)
        world.clock.advance((target - world.clock.now()).total_seconds())
        await settle(world)

    i1 = await world.report(operator)
    t1 = world.clock.now()
    await at(t1, 10), await day.act(i1, "A", "accept")
    await at(t1, 50), await day.act(i1, "A", "arrive")
    await at(t1, 100), await day.act(i1, "R", "accept")
    await at(t1, 170), await day.act(i1, "P", "arrive")
    await at(t1, 300), await day.act(i1, "R", "arrive")
    await at(t1, 310), await day.close(i1, operator)

    await at(t1, 600)
    i2 = await world.report(operator)
    t2 = world.clock.now()
    await at(t2, 20), await day.act(i2, "A", "accept")
    await at(t2, 25), await day.act(i2, "P", "shown")
    await at(t2, 30), await day.act(i2, "B", "accept")
    await at(t2, 60), await day.act(i2, "A", "arrive")
    await at(t2, 90), await day.act(i2, "B", "arrive")
    await at(t2, 200), await day.act(i2, "P", "arrive", by=operator)
    await at(t2, 400), await day.close(i2, operator)

    await at(t2, 600)
    i3 = await world.report(operator)
    t3 = world.clock.now()
    await at(t3, 30), await day.close(i3, operator)

    await at(t3, 600)
    i4 = await world.report(operator, *near(50, 90), category="theft")
    t4 = world.clock.now()
    await at(t4, 75), await day.act(i4, "A", "arrive")
    await at(t4, 100), await day.act(i4, "P", "arrive")
    await at(t4, 250), await day.act(i4, "R", "arrive")
    await at(t4, 400)
    day.incidents = [i1, i2, i3, i4]
    assert [i["village_id"] for i in day.incidents] == [day.villages["上元村"]] * 3 + [
        day.villages["下仙社区"]
    ]
    return day


async def report(world: World, by: Account | None = None, **params: Any) -> Any:
    account = by or await world.account("auditor")
    reply = await world.http.get(
        "/api/v1/reports/response-times", params=params, headers=account.headers
    )
    assert reply.status_code == 200, reply.text
    return reply


def stat(n: int, p50: float | None, p90: float | None, most: float | None) -> dict[str, Any]:
    return {"n": n, "p50_s": p50, "p90_s": p90, "max_s": most}


def segment(
    n: int, p50: float | None, p90: float | None, most: float | None, implied: int
) -> dict[str, Any]:
    return {**stat(n, p50, p90, most), "implied": implied}


def counts(figures: dict[str, Any]) -> tuple[int, ...]:
    keys = ("incidents", "with_arrival", "met", "breached", "cancelled", "pending", "uncovered")
    return tuple(figures[k] for k in keys)


async def test_figures_by_tier_team_village_and_day(world: World) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    body = (
        await report(
            world,
            **{"from": local_day, "to": f"{local_day}T23:59:59"},
            group_by=["tier", "team", "village", "day"],
        )
    ).json()
    tiers = {f["tier"]: f for f in body["totals"]}
    assert counts(tiers[1]) == (4, 3, 2, 1, 1, 0, 0)
    assert counts(tiers[2]) == (4, 3, 2, 1, 1, 0, 0)
    assert counts(tiers[3]) == (4, 2, 2, 1, 1, 0, 0)
    assert [tiers[t]["share_within_target"] for t in (1, 2, 3)] == [2 / 3, 2 / 3, 2 / 3]
    assert tiers[1]["time_to_arrival"] == stat(3, 60, 75, 75)
    assert tiers[2]["time_to_arrival"] == stat(3, 170, 200, 200)
    assert tiers[3]["time_to_arrival"] == stat(2, 250, 300, 300)
    # I4 A arrived at 75 without accepting first: its implied delivery and accept measure
    # nothing (they made an alert to delivery of 75 s and an acceptance to arrival of 0).
    assert tiers[1]["alert_to_delivery"] == segment(3, 20, 30, 30, 1)
    assert tiers[1]["delivery_to_acceptance"] == segment(3, 0, 0, 0, 1)
    assert tiers[1]["acceptance_to_arrival"] == segment(3, 40, 60, 60, 1)
    # P: shown at 25 in I2, where the operator recorded its arrival by radio, which implies
    # no accept; in I1 and I4 its leader arrived without accepting, which implies both.
    assert tiers[2]["alert_to_delivery"] == segment(1, 25, 25, 25, 2)
    assert tiers[2]["delivery_to_acceptance"] == segment(0, None, None, None, 2)
    assert tiers[2]["acceptance_to_arrival"] == segment(0, None, None, None, 2)
    # R: delivered by its accept at 100 in I1; in I4 its arrival at 250 implied both.
    assert tiers[3]["alert_to_delivery"] == segment(1, 100, 100, 100, 1)
    assert tiers[3]["delivery_to_acceptance"] == segment(1, 0, 0, 0, 1)
    assert tiers[3]["acceptance_to_arrival"] == segment(1, 200, 200, 200, 1)
    assert [t["target_s"] for t in body["totals"]] == [60, 180, 300]

    by = {g["by"]: g for g in body["groupings"]}
    assert by["tier"]["unit"] == "incident_tier"
    assert [g["label"] for g in by["tier"]["groups"]] == [
        "一梯队 应急联防队",
        "二梯队 巡逻警力",
        "三梯队 处突警力",
    ]
    teams = {g["label"]: g["tiers"][0] for g in by["team"]["groups"]}
    assert by["team"]["unit"] == "dispatch"
    assert counts(teams["A驻点队"]) == (4, 3, 2, 1, 1, 0, 0)
    assert teams["A驻点队"]["time_to_arrival"] == stat(3, 60, 75, 75)
    assert counts(teams["B机动队"]) == (4, 1, 0, 3, 1, 0, 0)
    assert teams["B机动队"]["share_within_target"] == 0
    assert teams["B机动队"]["time_to_arrival"] == stat(1, 90, 90, 90)
    assert counts(teams["R处突警力"]) == (4, 2, 2, 1, 1, 0, 0)

    villages = {g["label"]: {f["tier"]: f for f in g["tiers"]} for g in by["village"]["groups"]}
    assert counts(villages["上元村"][1]) == (3, 2, 2, 0, 1, 0, 0)
    assert villages["上元村"][1]["share_within_target"] == 1
    assert villages["上元村"][1]["time_to_arrival"] == stat(2, 50, 60, 60)
    assert counts(villages["下仙社区"][1]) == (1, 1, 0, 1, 0, 0, 0)
    assert villages["下仙社区"][1]["time_to_arrival"] == stat(1, 75, 75, 75)

    days = by["day"]["groups"]
    assert [g["key"] for g in days] == [local_day]
    assert counts(days[0]["tiers"][0]) == counts(tiers[1])

    _, i2, i3, _ = day.incidents
    excluded = [(e["incident_id"], e["tier"], e["outcome"]) for e in body["exclusions"]]
    assert excluded == [
        (i2["id"], 3, "breached"),
        (i3["id"], 1, "cancelled"),
        (i3["id"], 2, "cancelled"),
        (i3["id"], 3, "cancelled"),
    ]
    assert body["exclusions_total"] == 4 and body["exclusions_truncated"] is False
    assert "nearest-rank" in body["method"].lower() or "Nearest-rank" in body["method"]


async def test_filters(world: World) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    period = {"from": local_day, "to": f"{local_day}T23:59:59"}
    tier1 = (await report(world, **period, tier=1)).json()
    assert [f["tier"] for f in tier1["totals"]] == [1]
    theft = (await report(world, **period, category="theft")).json()
    assert [f["incidents"] for f in theft["totals"]] == [1, 1, 1]
    xiaxian = (await report(world, **period, village_id=day.villages["下仙社区"])).json()
    assert xiaxian["totals"][0]["time_to_arrival"] == stat(1, 75, 75, 75)
    team_b = (await report(world, **period, team_id=day.teams["B"]["id"])).json()
    assert [(f["tier"], f["met"], f["breached"]) for f in team_b["totals"]] == [(1, 0, 3)]
    assert {e["team_name"] for e in team_b["exclusions"]} == {"B机动队"}
    # From the moment I2 was reported: I1 falls outside the period.
    later = (await report(world, **{"from": day.incidents[1]["reported_at"][:19]})).json()
    assert later["totals"][0]["time_to_arrival"] == stat(2, 60, 75, 75)
    nothing = (await report(world, **{"from": "2020-01-01", "to": "2020-01-02"})).json()
    assert nothing["totals"] == [] and nothing["exclusions"] == []
    truncated = (await report(world, **period, max_exclusions=1)).json()
    assert len(truncated["exclusions"]) == 1 and truncated["exclusions_truncated"] is True


async def test_roles_and_bad_parameters(world: World) -> None:
    leader = await world.leader(await world.team("fixed_post"))
    reply = await world.http.get("/api/v1/reports/response-times", headers=leader.headers)
    assert reply.status_code == 403
    operator = await world.operator()
    for params in (
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"group_by": "hour"},
        {"tier": 4},
        {"format": "pdf"},
        {"from": "yesterday"},
    ):
        reply = await world.http.get(
            "/api/v1/reports/response-times", params=params, headers=operator.headers
        )
        assert reply.status_code == 422, (params, reply.text)


# Off the calendar once in UTC (year 0 or 10000), or digits pydantic would take for seconds
# since 1970: each is named, never answered as a 500 or as a report of 1970.
OFF_CALENDAR = [
    ({"from": "0001-01-01"}, "from"),
    ({"to": "0001-01-02"}, "to"),
    ({"from": "9999-12-31T23:59:59+08:00", "to": "9999-12-31T23:59:59-14:00"}, "to"),
    ({"from": "20260101"}, "from"),
    ({"to": "1767225600"}, "to"),
]


async def test_periods_off_the_calendar_and_unknown_ids_are_named(world: World) -> None:
    operator = await world.operator()
    urls = [
        ("/api/v1/reports/response-times", {}),
        ("/api/v1/reports/response-times", {"format": "csv"}),
        ("/api/v1/reports/response-times", {"format": "xlsx"}),
        ("/api/v1/reports/arrival-histogram", {}),
    ]
    for url, extra in urls:
        for params, field in OFF_CALENDAR:
            reply = await world.http.get(url, params={**params, **extra}, headers=operator.headers)
            assert reply.status_code == 422, (url, params, reply.text)
            assert field in reply.json()["detail"], (url, params, reply.text)
        for name in ("team_id", "village_id"):
            reply = await world.http.get(
                url, params={name: "nope", **extra}, headers=operator.headers
            )
            assert reply.status_code == 404, (url, name, reply.text)
            assert reply.json()["field"] == name
    # The calendar's edges themselves are periods like any other, in every format (the
    # workbook's Beijing time of the last second of year 9999 UTC is past the calendar).
    for edges in (
        {"from": "0001-01-01T00:00:00+00:00", "to": "9999-12-31T00:00:00+08:00"},
        {"from": "2026-01-01", "to": "9999-12-31T23:59:59Z"},
    ):
        for url, extra in urls:
            reply = await world.http.get(url, params={**edges, **extra}, headers=operator.headers)
            assert reply.status_code == 200, (url, edges, extra, reply.text)


def csv_rows(reply: Any) -> tuple[list[str], list[list[str]]]:
    lines = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    return lines[0], lines[1:]


CONTEXT = ["统计区间(北京时间)", "筛选条件", "生成时间(北京时间)"]
# Last in every CSV row: the chain head the figures were computed against.
CHAIN_HEAD = ["记录链头哈希", "记录链头时间(北京时间)"]
# Last in the exclusions' file: how many of how many it lists.
LISTED = "列出条数"
# Then what the incident was and where.
PLACE = ["类别", "村(社区)", "经度(WGS84)", "纬度(WGS84)"]
# Last in both exclusions' files: how far each team's alert got.
REACHED = "送达情况"
# The workbook's 未到场清单, its header row.
EXCLUDED_HEADER = (
    "警情编号",
    "报警时间(北京时间)",
    "梯队",
    "联防队",
    "结果",
    "原因",
    *PLACE,
    REACHED,
)


async def test_csv_has_a_bom_and_chinese_headers(world: World) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    next_day = (datetime.fromisoformat(local_day) + timedelta(days=1)).date().isoformat()
    period = {"from": local_day, "to": next_day}
    reply = await report(world, **period, group_by=["tier", "team"], format="csv")
    assert reply.headers["content-type"].startswith("text/csv")
    assert reply.content.startswith(b"\xef\xbb\xbf")
    header, rows = csv_rows(reply)
    assert header[:6] == ["分组方式", "分组", "梯队", "目标时限(秒)", "警情数", "有到场"]
    assert len(rows) == 3 + 4
    tier1 = rows[0]
    assert tier1[:2] == ["按梯队", "一梯队 应急联防队"]
    assert tier1[header.index("达标")] == "2" and tier1[header.index("超时")] == "1"
    assert float(tier1[header.index("到场用时P90(秒)")]) == 75
    # Every row ends with what the file covers: the period in Beijing time, the filters, when,
    # and the chain head the figures were computed against.
    assert header[-5:] == [*CONTEXT, *CHAIN_HEAD]
    same = (await report(world, **period)).json()  # the clock stood still
    generated, head = same["generated_at"], same["chain_head"]
    for row in rows:
        assert len(row) == len(header)
        assert row[-5:] == [
            f"{local_day} 00:00:00 至 {next_day} 00:00:00（不含）",
            "无（全部警情）",
            generated[:19].replace("T", " "),
            head["hash"],
            head["at"][:19].replace("T", " "),
        ]

    exclusions = await report(world, **period, format="csv", part="exclusions")
    header, rows = csv_rows(exclusions)
    assert header == [
        "警情编号",
        "报警时间",
        "梯队",
        "联防队",
        "结果",
        "原因",
        *CONTEXT,
        LISTED,
        *PLACE,
        REACHED,
        *CHAIN_HEAD,
    ]
    assert {r[header.index(LISTED)] for r in rows} == {"共4条，列出4条"}
    # The reasons in Chinese, like the rest of the file.
    assert [(r[4], r[5]) for r in rows] == [
        ("超时", "无人到场"),
        ("取消(不判定)", "时限前结案，无人需到场"),
        ("取消(不判定)", "时限前结案，无人需到场"),
        ("取消(不判定)", "时限前结案，无人需到场"),
    ]

    # Filtered: the team and village by name, the tier and category in words.
    filtered = await report(
        world,
        **period,
        format="csv",
        tier=1,
        team_id=day.teams["B"]["id"],
        village_id=day.villages["上元村"],
        category="fight",
    )
    header, rows = csv_rows(filtered)
    assert {r[header.index("筛选条件")] for r in rows} == {
        "梯队：一梯队 应急联防队；联防队：B机动队；村(社区)：上元村；类别：打架斗殴"
    }


async def test_an_exclusion_names_its_incident_and_the_teams_alerted_in_its_tier(
    world: World,
) -> None:
    """Measured per incident tier an exclusion has no team of its own: it names the teams
    alerted in the tier (the CSV's and the workbook's 联防队 were always empty), and says the
    incident's category and place, which a 32-character id alone did not."""
    day = await seed(world)
    i2, i3 = day.incidents[1], day.incidents[2]
    local_day = i2["reported_at"][:10]
    next_day = (datetime.fromisoformat(local_day) + timedelta(days=1)).date().isoformat()
    period = {"from": local_day, "to": next_day}
    listed = (await report(world, **period)).json()["exclusions"]
    assert [(e["incident_id"], e["tier"]) for e in listed] == [
        (i2["id"], 3),
        (i3["id"], 1),
        (i3["id"], 2),
        (i3["id"], 3),
    ]
    assert [[t["team_label"] for t in e["alerted_teams"]] for e in listed] == [
        ["R处突警力"],
        ["A驻点队", "B机动队"],
        ["P巡逻警力"],
        ["R处突警力"],
    ]
    assert all(e["team_id"] is None for e in listed)
    first = listed[0]
    assert first["category"] == "fight"
    assert first["village_id"] == day.villages["上元村"] and first["village_name"] == "上元村"
    assert (first["lon"], first["lat"]) == (i2["location"]["lon"], i2["location"]["lat"])
    assert first["alerted_teams"][0]["team"] == {
        "name": "R处突警力",
        "retired_on": None,
        "told_apart_by": None,
    }

    header, rows = csv_rows(await report(world, **period, format="csv", part="exclusions"))
    assert [r[header.index("联防队")] for r in rows] == [
        "R处突警力",
        "A驻点队、B机动队",
        "P巡逻警力",
        "R处突警力",
    ]
    book = load_workbook(io.BytesIO((await report(world, **period, format="xlsx")).content))
    sheet = list(book["未到场清单"].iter_rows(values_only=True))
    column = sheet[1].index("联防队")
    assert [r[column] for r in sheet[2:]] == [
        "R处突警力",
        "A驻点队、B机动队",
        "P巡逻警力",
        "R处突警力",
    ]

    # Per dispatch (filtered by a team) the one team alerted is the exclusion's own.
    mine = (await report(world, **period, team_id=day.teams["R"]["id"])).json()["exclusions"]
    assert [(e["team_id"], [t["team_id"] for t in e["alerted_teams"]]) for e in mine] == [
        (day.teams["R"]["id"], [day.teams["R"]["id"]])
    ] * 2
    schema = (await world.http.get("/openapi.json")).json()["components"]["schemas"]
    assert "alerted_teams" in schema["Exclusion"]["properties"]
    assert "AlertedTeam" in schema


async def delivered(world: World, by: Account, incident: dict[str, Any], team_id: str) -> str:
    """When the team's dispatch was recorded delivered, once its phone's ack is on record."""
    for _ in range(250):
        reply = await world.http.get(f"/api/v1/incidents/{incident['id']}", headers=by.headers)
        [d] = [d for d in reply.json()["dispatches"] if d["team_id"] == team_id]
        if d["delivered_at"]:
            at: str = d["delivered_at"]
            return at
        await asyncio.sleep(0.02)
    raise AssertionError("the ack was never recorded")


class Unreached:
    """An incident nobody came to: of tier 1, A's phone off and B's phone had the alert
    (acknowledged) and nobody accepted; tier 2's P accepted and did not come; tier 3's R's
    phone off. Every deadline passed."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.teams: dict[str, dict[str, Any]] = {}
        self.incident: dict[str, Any] = {}
        self.b_delivered = ""
        self.p_dispatch: dict[str, Any] = {}

    async def happen(self) -> Unreached:
        world = self.world
        world.long_logins()
        self.teams = {
            "A": await world.team("fixed_post", name="A驻点队"),
            "B": await world.team("mobile", *near(300, 270), name="B机动队"),
            "P": await world.team("patrol", radius_m=3000, name="P巡逻警力"),
            "R": await world.team("response", radius_m=6000, name="R处突警力"),
        }
        leaders = {k: await world.leader(t) for k, t in self.teams.items()}
        operator = await world.operator()
        phone = await world.connect(leaders["B"])
        self.incident = await world.report(operator, category="fight")
        await phone.next_of("alert")
        await phone.ack()
        self.b_delivered = await delivered(world, operator, self.incident, self.teams["B"]["id"])
        [p_dispatch] = [
            d for d in self.incident["dispatches"] if d["team_id"] == self.teams["P"]["id"]
        ]
        world.clock.advance(20)
        reply = await world.http.post(
            f"/api/v1/dispatches/{p_dispatch['id']}/accept", headers=leaders["P"].headers
        )
        assert reply.status_code == 200, reply.text
        [self.p_dispatch] = [d for d in reply.json()["dispatches"] if d["id"] == p_dispatch["id"]]
        world.clock.advance(301)
        await settle(world)
        await phone.close()
        return self

    @property
    def day(self) -> str:
        return str(self.incident["reported_at"][:10])


async def test_an_exclusion_tells_an_alert_never_delivered_from_one_delivered_not_accepted(
    world: World,
) -> None:
    """Nobody came: a team whose leader's phone was off (the alert never delivered) failed
    otherwise than one whose phone had it and nobody accepted, or one that accepted and did
    not come. Each alerted team of an exclusion says how far its alert got, in the JSON, the
    CSV and the workbook alike."""
    unreached = await Unreached(world).happen()
    teams, day = unreached.teams, unreached.day
    b_delivered, p_now = unreached.b_delivered, unreached.p_dispatch
    period = {
        "from": day,
        "to": (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat(),
    }
    listed = (await report(world, **period)).json()["exclusions"]
    reached = [
        [
            (t["team_name"], t["reached"], t["delivered_at"], t["accepted_at"])
            for t in e["alerted_teams"]
        ]
        for e in listed
    ]
    assert reached == [
        [("A驻点队", "not_delivered", None, None), ("B机动队", "delivered", b_delivered, None)],
        [("P巡逻警力", "accepted", p_now["delivered_at"], p_now["accepted_at"])],
        [("R处突警力", "not_delivered", None, None)],
    ]
    # Per dispatch, the exclusion's own team.
    mine = (await report(world, **period, team_id=teams["B"]["id"])).json()["exclusions"]
    assert [[t["reached"] for t in e["alerted_teams"]] for e in mine] == [["delivered"]]

    said = [
        "A驻点队：未送达；B机动队：已送达未接警",
        "P巡逻警力：已接警未到场",
        "R处突警力：未送达",
    ]
    header, rows = csv_rows(await report(world, **period, format="csv", part="exclusions"))
    assert header[-3:] == ["送达情况", *CHAIN_HEAD]
    assert [r[-3] for r in rows] == said
    header, rows = csv_rows(
        await report(world, **period, format="csv", part="exclusions", team_id=teams["B"]["id"])
    )
    assert [r[-3] for r in rows] == ["已送达未接警"]
    book = load_workbook(io.BytesIO((await report(world, **period, format="xlsx")).content))
    sheet = list(book["未到场清单"].iter_rows(values_only=True))
    assert sheet[1][-1] == "送达情况"
    assert [r[-1] for r in sheet[2:]] == said


async def test_the_exclusions_files_say_what_each_incident_was_and_where(world: World) -> None:
    """The office works from the files: an exclusion's row there says the incident's category,
    village and place as the page does (the CSV and the workbook had the team column alone),
    and one outside every village is said to be so, its place still given."""
    day = await seed(world)
    i2, i3 = day.incidents[1], day.incidents[2]
    # Outside both villages (west of 上元村), nobody comes: its tier 1 runs out.
    astray = await world.report(day.operator, *near(2500, 270), category="theft")
    world.clock.advance(61)
    await settle(world)
    local_day = i2["reported_at"][:10]
    next_day = (datetime.fromisoformat(local_day) + timedelta(days=1)).date().isoformat()
    period = {"from": local_day, "to": next_day, "tier": 1}
    expected = [
        (i3["id"], "打架斗殴", "上元村", i3["location"]["lon"], i3["location"]["lat"]),
        (
            astray["id"],
            "盗窃",
            "未划入村(社区)",
            astray["location"]["lon"],
            astray["location"]["lat"],
        ),
    ]

    header, rows = csv_rows(await report(world, **period, format="csv", part="exclusions"))
    assert header[-7:-3] == PLACE
    assert [(r[0], *r[-7:-5], float(r[-5]), float(r[-4])) for r in rows] == expected

    book = load_workbook(io.BytesIO((await report(world, **period, format="xlsx")).content))
    sheet = list(book["未到场清单"].iter_rows(values_only=True))
    assert sheet[1] == EXCLUDED_HEADER
    assert [(r[0], *r[6:10]) for r in sheet[2:]] == expected


async def test_csv_writes_team_names_a_spreadsheet_would_work_out_as_text(world: World) -> None:
    """Names such as -1-1 read like numbers but are sums to a spreadsheet (OWASP CSV injection):
    they are written after an apostrophe, as text."""
    names = ("-1-1", "+1-2", "-(3)-(4)")
    teams = []
    for n, name in enumerate(names):
        teams.append(await world.team("fixed_post", *near(2000 * n, 90), name=name))
        await world.report(await world.operator(), *near(2000 * n, 90))
    world.clock.advance(600)
    await settle(world)

    header, rows = csv_rows(await report(world, group_by=["team"], format="csv"))
    assert sorted(r[1] for r in rows if r[0] == "按联防队") == sorted("'" + n for n in names)
    for team in teams:
        part = {"format": "csv", "part": "exclusions", "team_id": team["id"]}
        header, rows = csv_rows(await report(world, **part))
        assert {r[header.index("联防队")] for r in rows} == {"'" + team["name"]}
    book = load_workbook(io.BytesIO((await report(world, format="xlsx")).content))
    teams = book["按联防队"]
    cells = [teams.cell(row=r, column=1) for r in range(3, 3 + len(names))]
    # A workbook's text cell is never worked out: the name stays as it is.
    assert sorted(c.value for c in cells) == sorted(names)
    assert {c.data_type for c in cells} == {"s"}


async def test_the_exclusions_file_lists_them_all_and_says_when_asked_for_fewer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """340 incidents closed 20 s after the report, nobody alerted: 1020 tiers without an
    arrival, more than the 1000 the JSON lists by default. The file the page downloads (no
    max_exclusions) holds every one; a file asked for fewer says on every row that it is cut."""
    operator = await world.operator()
    now = world.clock.now()
    cases = []
    for n in range(340):
        reported = now - timedelta(hours=1, seconds=n)
        tiers = [
            Tier(t, target, reported + timedelta(seconds=target), "cancelled", False, None)
            for t, target in ((1, 60.0), (2, 180.0), (3, 300.0))
        ]
        cases.append(
            Case(new_id(), reported, reported + timedelta(seconds=20), "fight", None, tiers)
        )
    await store(world, cases, operator.id)
    period = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}
    body = (await report(world, **period)).json()
    assert (body["exclusions_total"], len(body["exclusions"])) == (1020, 1000)
    assert body["exclusions_truncated"] is True

    header, rows = csv_rows(await report(world, **period, format="csv", part="exclusions"))
    assert len(rows) == 1020
    assert {r[header.index(LISTED)] for r in rows} == {"共1020条，列出1020条"}
    # Oldest first, each incident's tiers in order, as the JSON lists them.
    assert [(r[0], r[2]) for r in rows[:3]] == [
        (cases[-1].id, TIER_LABELS[1]),
        (cases[-1].id, TIER_LABELS[2]),
        (cases[-1].id, TIER_LABELS[3]),
    ]

    # The JSON of them all, written in batches (off the event loop) as one list in that order.
    monkeypatch.setattr(exports, "JSON_BATCH", 7)
    every = (await report(world, **period, max_exclusions=1020)).json()
    assert [e["incident_id"] for e in every["exclusions"]] == [r[0] for r in rows]
    assert every["exclusions_truncated"] is False
    rest = {k: v for k, v in body.items() if k not in ("exclusions", "exclusions_truncated")}
    assert {k: v for k, v in every.items() if k in rest} == rest
    assert every["exclusions"][:1000] == body["exclusions"]

    asked = {**period, "format": "csv", "part": "exclusions", "max_exclusions": 10}
    header, rows = csv_rows(await report(world, **asked))
    assert len(rows) == 10
    assert {r[header.index(LISTED)] for r in rows} == {"共1020条，列出10条"}


async def test_a_retired_team_is_told_apart_from_the_team_that_took_its_name(
    world: World,
) -> None:
    """甲联防队 was retired, a second team took its name and was retired a day later, and a
    third serves under it now; 乙联防队 was retired once and its successor serves; two 丙联防队
    were retired at the same moment. Each row by team says which team it is, in the JSON, the
    CSV, the workbook and the exclusions alike, in one order: by name, the team in service,
    then the retired ones as they were retired."""
    world.long_logins()
    admin = await world.admin()
    operator = await world.operator()
    made: list[dict[str, Any]] = []

    async def team(name: str) -> dict[str, Any]:
        made.append(await world.team("fixed_post", *near(2000 * len(made), 90), name=name))
        return made[-1]

    async def retire(team: dict[str, Any], days_after: int = 1) -> None:
        reply = await world.http.delete(f"/api/v1/teams/{team['id']}", headers=admin.headers)
        assert reply.status_code == 204, reply.text
        world.clock.advance(days_after * 86400)

    jia_first, yi_old = await team("甲联防队"), await team("乙联防队")
    await retire(jia_first)
    await retire(yi_old)
    jia_second = await team("甲联防队")
    await retire(jia_second)
    bing = [await team("丙联防队")]
    await retire(bing[0], days_after=0)
    bing.append(await team("丙联防队"))
    await retire(bing[1])
    jia_now, yi_now = await team("甲联防队"), await team("乙联防队")
    listed = (
        await world.http.get("/api/v1/teams?include_retired=true", headers=admin.headers)
    ).json()
    retired_at = {t["id"]: t["retired_at"] for t in listed}

    def day(team: dict[str, Any]) -> str:
        return str(datetime.fromisoformat(retired_at[team["id"]]).astimezone(DISPLAY_TZ).date())

    first_label = f"甲联防队（{day(jia_first)}撤销）"
    # By name as the server sorts text (丙 U+4E19, 乙 U+4E59, 甲 U+7532); namesakes retired
    # at one moment by id.
    expected = [
        *(
            (t["id"], f"丙联防队（{day(t)}撤销，编号{t['id']}）")
            for t in sorted(bing, key=lambda t: (retired_at[t["id"]], t["id"]))
        ),
        (yi_now["id"], "乙联防队"),
        (yi_old["id"], "乙联防队（已撤销）"),
        (jia_now["id"], "甲联防队"),
        (jia_first["id"], first_label),
        (jia_second["id"], f"甲联防队（{day(jia_second)}撤销）"),
    ]
    assert day(jia_first) != day(jia_second)

    # Each team alerted to an incident of its own, where nobody came.
    now = world.clock.now()
    cases = []
    for n, t in enumerate(made):
        reported = now - timedelta(hours=n + 1)
        deadline = reported + timedelta(seconds=60)
        c = Case(new_id(), reported, reported + timedelta(minutes=10), "fight", None)
        c.tiers = [Tier(1, 60.0, deadline, "breached", True, None)]
        c.hops = [Hop(t["id"], 1, reported, None, None, None)]
        cases.append(c)
    await store(world, cases, operator.id)
    period = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}

    body = (await report(world, **period, group_by=["team"])).json()
    (by_team,) = body["groupings"]
    assert [(g["key"], g["label"]) for g in by_team["groups"]] == expected
    labels = [label for _, label in expected]
    header, rows = csv_rows(await report(world, **period, group_by=["team"], format="csv"))
    assert [r[1] for r in rows] == labels
    book = load_workbook(io.BytesIO((await report(world, **period, format="xlsx")).content))
    sheet = book["按联防队"]
    assert [sheet.cell(row=r, column=1).value for r in range(3, 3 + len(labels))] == labels

    # Filtered by the first 甲联防队, its exclusions name it as the rows by team do.
    first = {**period, "team_id": jia_first["id"]}
    (excluded,) = (await report(world, **first)).json()["exclusions"]
    assert (excluded["team_name"], excluded["team_label"]) == ("甲联防队", first_label)
    # Each label in its parts too, for a page to say it in its own language.
    parts = {g["key"]: g["team"] for g in by_team["groups"]}
    assert parts[yi_now["id"]] == {"name": "乙联防队", "retired_on": None, "told_apart_by": None}
    assert parts[yi_old["id"]] == {
        "name": "乙联防队",
        "retired_on": day(yi_old),
        "told_apart_by": None,
    }
    assert parts[jia_first["id"]] == {
        "name": "甲联防队",
        "retired_on": day(jia_first),
        "told_apart_by": "day",
    }
    assert [parts[t["id"]]["told_apart_by"] for t in bing] == ["id", "id"]
    assert excluded["team"] == parts[jia_first["id"]]
    header, rows = csv_rows(await report(world, **first, format="csv", part="exclusions"))
    assert [r[header.index("联防队")] for r in rows] == [first_label]
    book = load_workbook(io.BytesIO((await report(world, **first, format="xlsx")).content))
    assert [r[3] for r in book["未到场清单"].iter_rows(min_row=3, values_only=True)] == [
        first_label
    ]


async def test_a_file_filtered_by_a_team_says_which_of_two_namesakes_it_is_of(
    world: World,
) -> None:
    """甲联防队 was retired and the team now serving took its name. A CSV or workbook filtered
    by either names it as the rows by team do, in the CSV's 筛选条件 on every row, on 说明 and
    in 警情明细's title: a row copied elsewhere still says which team it covers."""
    world.long_logins()
    admin = await world.admin()
    operator = await world.operator()
    old = await world.team("fixed_post", name="甲联防队")
    reply = await world.http.delete(f"/api/v1/teams/{old['id']}", headers=admin.headers)
    assert reply.status_code == 204, reply.text
    world.clock.advance(86400)
    new = await world.team("fixed_post", *near(2000, 90), name="甲联防队")
    now = world.clock.now()
    cases = [
        breached_unanswered(t["id"], now - timedelta(days=2, hours=n))
        for n, t in enumerate((old, new))
    ]
    await store(world, cases, operator.id)
    period = {"from": (now - timedelta(days=3)).isoformat(), "to": now.isoformat()}
    by_team = (await report(world, **period, group_by=["team"])).json()["groupings"][0]
    labels = {g["key"]: g["label"] for g in by_team["groups"]}
    assert labels == {new["id"]: "甲联防队", old["id"]: "甲联防队（已撤销）"}
    for t in (old, new):
        label = labels[t["id"]]
        for part in ("figures", "exclusions"):
            header, rows = csv_rows(
                await report(world, **period, team_id=t["id"], format="csv", part=part)
            )
            assert rows and {r[header.index("筛选条件")] for r in rows} == {f"联防队：{label}"}
        reply = await report(world, **period, team_id=t["id"], format="xlsx")
        book = load_workbook(io.BytesIO(reply.content))
        about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
        assert about["筛选条件"] == f"联防队：{label}"
        assert book["警情明细"]["A1"].value == (
            f"警情明细（共1起，列出1起；仅{label}被派警的警情，结果与用时为该队自己的到场）"
        )
        # The JSON gives the label beside the bare name.
        body = (await report(world, **period, team_id=t["id"])).json()
        assert body["filter_names"] == {"team_id": "甲联防队"}
        assert body["filter_labels"] == {"team_id": label}


async def test_xlsx_sheets_cells_and_charts(world: World) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    reply = await report(world, **{"from": local_day}, group_by=["village"], format="xlsx")
    assert "filename*=UTF-8''" in reply.headers["content-disposition"]
    book = load_workbook(io.BytesIO(reply.content))
    assert book.sheetnames == [
        "说明",
        "按村(社区)",
        "按梯队",
        "按联防队",
        "一梯队到场时间分布",
        "未到场清单",
        "警情明细",
    ]
    tiers = book["按梯队"]
    header = [c.value for c in tiers[2]]
    # The group, then the tier its figures are of: two headers, two names.
    assert header[:4] == ["分组(梯队)", "梯队", "目标时限(秒)", "警情数"]
    for sheet in book.sheetnames[1:4]:
        names = [c.value for c in book[sheet][2]]
        assert len(set(names)) == len(names), sheet
    first = [c.value for c in tiers[3]]
    assert first[0] == "一梯队 应急联防队"
    assert first[header.index("达标")] == 2
    assert first[header.index("达标率")] == pytest.approx(2 / 3)
    assert tiers.cell(row=3, column=header.index("达标率") + 1).number_format == "0.0%"
    assert first[header.index("到场用时P50(秒)")] == 60

    teams = book["按联防队"]
    (chart,) = teams._charts
    assert isinstance(chart, BarChart)
    (series,) = chart.series
    assert series.val.numRef.f == "'按联防队'!$L$3:$L$6"
    assert series.cat.strRef.f == "'按联防队'!$A$3:$A$6"
    shares = {
        teams.cell(row=r, column=1).value: teams.cell(row=r, column=12).value for r in range(3, 7)
    }
    assert shares["B机动队"] == 0 and shares["A驻点队"] == pytest.approx(2 / 3)

    histogram = book["一梯队到场时间分布"]
    bins = [row[2] for row in histogram.iter_rows(min_row=3, values_only=True) if row[2]]
    # 50 s in (40, 50], 60 s in (50, 60] (left of the line: it meets), 75 s in (70, 80].
    assert filled_bins(histogram) == {"40-50秒": 1, "50-60秒": 1, "70-80秒": 1}
    (combo,) = histogram._charts
    assert isinstance(combo, BarChart)
    kinds = [type(c) for c in combo._charts]
    assert kinds == [BarChart, ScatterChart]
    line = combo._charts[1].series[0]
    assert [histogram["F3"].value, histogram["F4"].value] == [60, 60]
    assert line.xVal.numRef.f.endswith("$F$3:$F$4")
    assert combo._charts[1].x_axis.scaling.max == len(bins) * 10

    excluded = book["未到场清单"]
    assert excluded["A1"].value == "未到场清单（共4条，列出4条）"
    # Its times are Beijing time, and the header says so like every other time column.
    assert tuple(c.value for c in excluded[2]) == EXCLUDED_HEADER
    assert [r[4:6] for r in excluded.iter_rows(min_row=3, values_only=True)] == [
        ("超时", "无人到场"),
        ("取消(不判定)", "时限前结案，无人需到场"),
        ("取消(不判定)", "时限前结案，无人需到场"),
        ("取消(不判定)", "时限前结案，无人需到场"),
    ]
    details = book["警情明细"]
    assert details["A1"].value == "警情明细（共4起，列出4起）"
    assert [c.value for c in details[2]][:2] == ["警情编号", "报警时间(北京时间)"]
    assert [c.value for c in details[2]][5:] == [
        "一梯队结果",
        "一梯队用时(秒)",
        "一梯队时限(秒)",
        "二梯队结果",
        "二梯队用时(秒)",
        "二梯队时限(秒)",
        "三梯队结果",
        "三梯队用时(秒)",
        "三梯队时限(秒)",
    ]
    rows = list(details.iter_rows(min_row=3, values_only=True))
    assert [r[0] for r in rows] == [i["id"] for i in day.incidents]
    assert rows[3][2:8] == ("下仙社区", "盗窃", "处置中", "超时", 75, 60)
    assert rows[0][5:14] == ("达标", 50, 60, "达标", 170, 180, "达标", 300, 300)
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert about["筛选条件"] == "无（全部警情）"
    assert "由到场推定" in about["各环节用时"] and "不计入" in about["各环节用时"]


async def test_the_workbooks_times_are_date_times_in_beijing_time(world: World) -> None:
    """An incident nobody came to, reported at a time with a fraction of a second: its 报警时间
    on 警情明细 and on 未到场清单, and the workbook's 生成时间 on 说明, are spreadsheet
    date-times (Excel's and WPS's date filters work on them), Beijing wall-clock time to the
    second as the CSV writes it, shown as yyyy-mm-dd hh:mm:ss under a header that says
    北京时间."""
    operator = await world.operator()
    await world.team("fixed_post")
    world.clock.advance(0.75)
    incident = await world.report(operator)
    world.clock.advance(120)
    await settle(world)
    reported = datetime.fromisoformat(incident["reported_at"]).astimezone(DISPLAY_TZ)
    assert reported.microsecond
    local = reported.replace(tzinfo=None, microsecond=0)
    generated = datetime.fromisoformat((await report(world)).json()["generated_at"])
    book = load_workbook(io.BytesIO((await report(world, format="xlsx")).content))
    for name in ("警情明细", "未到场清单"):
        sheet = book[name]
        assert sheet["B2"].value == "报警时间(北京时间)"
        cell = sheet["B3"]
        assert (cell.is_date, cell.value, cell.number_format) == (
            True,
            local,
            "yyyy-mm-dd hh:mm:ss",
        ), name
    about = {r[0].value: r[1] for r in book["说明"].iter_rows(min_row=3)}
    made = about["生成时间（北京时间）"]
    assert made.is_date and made.number_format == "yyyy-mm-dd hh:mm:ss"
    assert made.value == generated.astimezone(DISPLAY_TZ).replace(tzinfo=None, microsecond=0)
    # The CSV writes them as text, as before.
    header, rows = csv_rows(await report(world, format="csv", part="exclusions"))
    assert {r[header.index("报警时间")] for r in rows} == {f"{local:%Y-%m-%d %H:%M:%S}"}


async def test_a_period_bound_within_a_second_is_written_with_its_fraction(world: World) -> None:
    """The rows' times are cut to the second. A period asked for up to half a second after an
    incident it lists (reported at hh:mm:ss.3, to hh:mm:ss.5) was written "… 至 hh:mm:ss（不含）":
    the file listed a row at hh:mm:ss and said that second was left out. The bounds keep their
    fraction, so a row's time never reads on or past the end the file gives."""
    operator = await world.operator()
    await world.team("fixed_post")
    now = world.clock.now()
    world.clock.advance(1 - now.microsecond / 1e6 + 0.3)
    incident = await world.report(operator)
    world.clock.advance(120)
    await settle(world)
    reported = datetime.fromisoformat(incident["reported_at"]).astimezone(DISPLAY_TZ)
    assert reported.microsecond == 300_000
    start = reported - timedelta(hours=1, microseconds=250_000)
    end = reported + timedelta(microseconds=200_000)
    period = {"from": start.isoformat(), "to": end.isoformat()}
    written = f"{start:%Y-%m-%d %H:%M:%S}.05 至 {end:%Y-%m-%d %H:%M:%S}.5（不含）"

    header, rows = csv_rows(await report(world, **period, format="csv", part="exclusions"))
    # Its three tiers, none reached (a fixed post alone: tiers 2 and 3 uncovered).
    assert [r[header.index("报警时间")] for r in rows] == [f"{reported:%Y-%m-%d %H:%M:%S}"] * 3
    assert {r[header.index("统计区间(北京时间)")] for r in rows} == {written}
    book = load_workbook(io.BytesIO((await report(world, **period, format="xlsx")).content))
    about = {r[0].value: r[1].value for r in book["说明"].iter_rows(min_row=3)}
    assert about["统计区间（北京时间）"] == written
    # A bound on the second is written as before, without a fraction.
    whole = {"from": reported.date().isoformat(), "to": end.isoformat()}
    header, rows = csv_rows(await report(world, **whole, format="csv", part="exclusions"))
    assert rows[0][header.index("统计区间(北京时间)")].startswith(
        f"{reported:%Y-%m-%d} 00:00:00 至"
    )


async def test_a_long_detail_sheet_is_written_a_batch_at_a_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """警情明细 may list a million incidents (max_incidents): the workbook is written as they are
    read, a batch at a time, so that the memory it takes does not grow with its rows. Listing
    1500 incidents rather than 150 takes less than 1 kB a row more (the file's own bytes),
    where the sheet held whole took 3 kB a row more (a cell per value, a record per incident
    and tier; 1.3 GB of memory for 200 000 rows). The incidents are listed once each, oldest
    first, across batches that end between two reported at the same instant."""
    monkeypatch.setattr(service, "DETAIL_BATCH", 50)
    operator = await world.operator()
    now = world.clock.now()
    cases = []
    for n in range(1500):
        # Three incidents an instant, in an order their ids do not follow.
        reported = now - timedelta(hours=1, seconds=n // 3)
        deadline, arrived = reported + timedelta(seconds=60), reported + timedelta(seconds=30)
        c = Case(new_id(), reported, None, "fight", None)
        c.tiers = [Tier(1, 60.0, deadline, "met", True, arrived)]
        cases.append(c)
    await store(world, cases, operator.id)
    oldest = sorted(cases, key=lambda c: (c.reported, c.id))
    period = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat(), "tier": 1}
    auditor = await world.account("auditor")

    async def listed(rows: int) -> tuple[list[Any], int]:
        """The ids 警情明细 lists, and the most memory taken while the workbook was made."""
        params = {**period, "format": "xlsx", "max_incidents": rows}
        tracemalloc.start()
        try:
            # Traced, every allocation takes longer.
            reply = await world.http.get(
                "/api/v1/reports/response-times",
                params=params,
                headers=auditor.headers,
                timeout=300,
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert reply.status_code == 200, reply.text
        sheet = load_workbook(io.BytesIO(reply.content))["警情明细"]
        assert sheet["A1"].value == f"警情明细（共1500起，列出{rows}起；仅列一梯队）"
        return [r[0] for r in sheet.iter_rows(min_row=3, values_only=True)], peak

    few, small = await listed(150)
    many, large = await listed(1500)
    assert few == [c.id for c in oldest[:150]]
    assert many == [c.id for c in oldest]
    assert large - small < 1350 * 1000, (small, large)


def shown_as_percent(value: float, number_format: str) -> str:
    """What a spreadsheet shows of a number in a 0.0% cell: to 0.1 %, half away from zero."""
    assert number_format == "0.0%"
    return str(Decimal(repr(value * 100)).quantize(Decimal("0.1"), ROUND_HALF_UP)) + "%"


async def test_the_workbooks_share_is_never_rounded_onto_100_or_0_percent(world: World) -> None:
    """2001 incidents: tier 1 met by 2000 and breached by 1 (0.9995, which a 0.0% cell shows as
    100.0%, as if none had missed), tier 2 met by 1 and breached by 2000 (0.0005, shown as 0.0%
    as if none had met). The workbook's 达标率 reads 99.9% and 0.1%, as the page shows them, and
    stays a number; the CSV, which has no format, keeps the shares in full."""
    operator = await world.operator()
    now = world.clock.now()
    cases = []
    for n in range(2001):
        reported = now - timedelta(hours=2, seconds=n)
        c = Case(new_id(), reported, None, "fight", None)
        # The first: tier 1 late (90 s against 60), tier 2 in time (100 s against 180); every
        # other the other way round (30 s and 200 s).
        first = n == 0
        c.tiers = [
            Tier(
                1,
                60.0,
                reported + timedelta(seconds=60),
                "breached" if first else "met",
                True,
                reported + timedelta(seconds=90 if first else 30),
            ),
            Tier(
                2,
                180.0,
                reported + timedelta(seconds=180),
                "met" if first else "breached",
                True,
                reported + timedelta(seconds=100 if first else 200),
            ),
        ]
        cases.append(c)
    await store(world, cases, operator.id)
    period = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}
    body = (await report(world, **period)).json()
    assert [(f["tier"], f["met"], f["breached"]) for f in body["totals"]] == [
        (1, 2000, 1),
        (2, 1, 2000),
    ]
    book = load_workbook(io.BytesIO((await report(world, **period, format="xlsx")).content))
    tiers = book["按梯队"]
    column = [c.value for c in tiers[2]].index("达标率") + 1
    shares = [tiers.cell(row=r, column=column) for r in (3, 4)]
    assert [c.data_type for c in shares] == ["n", "n"]
    assert [shown_as_percent(c.value, c.number_format) for c in shares] == ["99.9%", "0.1%"]
    header, rows = csv_rows(await report(world, **period, format="csv"))
    assert [float(r[header.index("达标率")]) for r in rows] == [2000 / 2001, 1 / 2001]


async def test_workbook_follows_the_team_and_tier_filters_and_names_them(world: World) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    team_b = day.teams["B"]["id"]
    reply = await report(world, **{"from": local_day}, team_id=team_b, format="xlsx")
    book = load_workbook(io.BytesIO(reply.content))
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert about["筛选条件"] == "联防队：B机动队"
    assert about["筛选编号"] == f"team_id={team_b}"
    # B's own arrivals, as the figures count them: I1 nobody of B came although A met the
    # tier at 50 s; I2 B arrived at 90 s, late.
    details = book["警情明细"]
    assert details["A1"].value == (
        "警情明细（共4起，列出4起；仅B机动队被派警的警情，结果与用时为该队自己的到场）"
    )
    assert [c.value for c in details[2]][5:] == [
        "一梯队本队结果",
        "一梯队本队用时(秒)",
        "一梯队时限(秒)",
    ]
    rows = list(details.iter_rows(min_row=3, values_only=True))
    assert [r[5:] for r in rows] == [
        ("超时", None, 60),
        ("超时", 90, 60),
        ("取消(不判定)", None, 60),
        ("超时", None, 60),
    ]

    reply = await report(world, **{"from": local_day}, tier=2, format="xlsx")
    book = load_workbook(io.BytesIO(reply.content))
    assert book.sheetnames == [
        "说明",
        "按梯队",
        "按联防队",
        "二梯队到场时间分布",
        "未到场清单",
        "警情明细",
    ]
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert about["筛选条件"] == "梯队：二梯队 巡逻警力"
    details = book["警情明细"]
    assert details["A1"].value == "警情明细（共4起，列出4起；仅列二梯队）"
    assert [c.value for c in details[2]][5:] == ["二梯队结果", "二梯队用时(秒)", "二梯队时限(秒)"]
    rows = list(details.iter_rows(min_row=3, values_only=True))
    assert [r[5:] for r in rows] == [
        ("达标", 170, 180),
        ("超时", 200, 180),
        ("取消(不判定)", None, 180),
        ("达标", 100, 180),
    ]
    histogram = book["二梯队到场时间分布"]
    assert filled_bins(histogram) == {"90-100秒": 1, "160-170秒": 1, "190-200秒": 1}
    assert [histogram["F3"].value, histogram["F4"].value] == [180, 180]

    # Filtered by the patrol without a tier: its own tier's histogram, as on 警情明细, not an
    # empty tier 1 against a 60 s line.
    patrol = day.teams["P"]["id"]
    reply = await report(world, **{"from": local_day}, team_id=patrol, format="xlsx")
    book = load_workbook(io.BytesIO(reply.content))
    assert "一梯队到场时间分布" not in book.sheetnames
    assert [c.value for c in book["警情明细"][2]][5:] == [
        "二梯队本队结果",
        "二梯队本队用时(秒)",
        "二梯队时限(秒)",
    ]
    histogram = book["二梯队到场时间分布"]
    assert filled_bins(histogram) == {"90-100秒": 1, "160-170秒": 1, "190-200秒": 1}
    assert [histogram["F3"].value, histogram["F4"].value] == [180, 180]
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert about["二梯队到场时间分布"].startswith("二梯队到场用时")


async def test_uncovered_tiers_are_counted_whatever_their_outcome(world: World) -> None:
    """Three incidents 20 km out, where no team's zone nor the escalation ring reaches: one
    closed after 30 s (cancelled), one left open past every deadline (breached), one just
    reported (pending). Each of their tiers is uncovered; only the breached ones are breaches."""
    await world.team("fixed_post", name="A驻点队")
    operator = await world.operator()
    far = near(20_000, 0)
    closed = await world.report(operator, *far)
    world.clock.advance(30)
    await Day(world).close(closed, operator)
    world.clock.advance(600)
    await world.report(operator, *far)
    world.clock.advance(400)
    await settle(world)
    await world.report(operator, *far)

    body = (await report(world)).json()
    for tier in body["totals"]:
        assert counts(tier) == (3, 0, 0, 1, 1, 1, 3), tier["tier"]
        assert tier["uncovered_breached"] == 1
        assert tier["share_within_target"] == 0
    assert "whatever their outcome" in body["method"]
    assert [(e["outcome"], e["covered"]) for e in body["exclusions"] if e["tier"] == 1] == [
        ("cancelled", False),
        ("breached", False),
        ("pending", False),
    ]
    schema = (await world.http.get("/openapi.json")).json()["components"]["schemas"]
    described = schema["TierFigures"]["properties"]["uncovered"]["description"]
    assert "whatever their outcome" in described and "counted in breached" not in described

    header, rows = csv_rows(await report(world, format="csv"))
    assert [r[header.index("无覆盖且超时")] for r in rows] == ["1", "1", "1"]
    header, rows = csv_rows(await report(world, format="csv", part="exclusions"))
    assert [r[5] for r in rows if r[2] == "一梯队 应急联防队"] == [
        "此处无该梯队覆盖（时限前结案，无人需到场）",
        "此处无该梯队覆盖（无人到场）",
        "此处无该梯队覆盖（时限未过）",
    ]
    book = load_workbook(io.BytesIO((await report(world, format="xlsx")).content))
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert "不论结果" in about["无覆盖"] and "时限一过即为超时" in about["无覆盖"]
    assert "覆盖" not in about["达标率"]


async def test_a_team_name_stored_with_what_xml_cannot_hold_leaves_the_workbook_readable(
    world: World,
) -> None:
    """Names with U+FFFE or U+FFFF are refused now; a team's stored before still shows in the
    workbook (a sheet's title, the filters, the rows by team, the exclusions), without them:
    openpyxl wrote them, and Excel called the whole file corrupt."""
    team = await world.team("fixed_post", name="坏名队")
    async with world.runtime.transaction() as session:
        await session.execute(
            update(Team).where(Team.id == team["id"]).values(name="坏\uffff名\ufffe队\x07")
        )
    operator = await world.operator()
    incident = await world.report(operator)
    world.clock.advance(400)
    await settle(world)

    local_day = incident["reported_at"][:10]
    reply = await report(
        world, **{"from": local_day}, team_id=team["id"], group_by=["team"], format="xlsx"
    )
    assert unreadable_parts(reply.content) == []
    book = load_workbook(io.BytesIO(reply.content))
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert about["筛选条件"] == "联防队：坏名队"
    assert "仅坏名队被派警" in book["警情明细"]["A1"].value
    assert book["按联防队"]["A3"].value == "坏名队"
    assert [r[3] for r in book["未到场清单"].iter_rows(min_row=3, values_only=True)] == ["坏名队"]


# Three fixed posts 2 km apart, each alone at its own incident, on scene this long after the
# report: a hair before the 60 s target, exactly on it, and a hair past it.
AROUND_THE_TARGET = {"早到驻点队": 59.96, "准时驻点队": 60.0, "迟到驻点队": 60.04}


async def seed_around_the_target(world: World) -> dict[str, dict[str, Any]]:
    """The teams by name; their arrivals are AROUND_THE_TARGET's."""
    operator = await world.operator()
    teams: dict[str, dict[str, Any]] = {}
    for n, (name, arrival) in enumerate(AROUND_THE_TARGET.items()):
        site = near(2000 * n, 90)
        team = teams[name] = await world.team("fixed_post", *site, name=name)
        leader = await world.leader(team)
        incident = await world.report(operator, *site)
        world.clock.advance(arrival)
        await settle(world)
        (dispatch,) = incident["dispatches"]
        reply = await world.http.post(
            f"/api/v1/dispatches/{dispatch['id']}/arrive", headers=leader.headers
        )
        assert reply.status_code == 200, reply.text
        world.clock.advance(600)
        await settle(world)
    return teams


async def test_the_exports_give_times_in_full_so_a_hair_past_the_target_shows(
    world: World,
) -> None:
    """A 60.04 s arrival breached the 60 s target: no file may write it as 60.0 or 60."""
    await seed_around_the_target(world)
    body = (await report(world, group_by=["team"])).json()
    (teams,) = body["groupings"]
    judged = {g["label"]: g["tiers"][0] for g in teams["groups"]}
    assert {name: judged[name]["time_to_arrival"]["max_s"] for name in judged} == (
        AROUND_THE_TARGET
    )
    assert [(judged[n]["met"], judged[n]["breached"]) for n in AROUND_THE_TARGET] == [
        (1, 0),
        (1, 0),
        (0, 1),
    ]

    header, rows = csv_rows(await report(world, group_by=["team"], format="csv"))
    written = {r[1]: r[header.index("到场用时P50(秒)")] for r in rows if r[0] == "按联防队"}
    assert written == {"早到驻点队": "59.96", "准时驻点队": "60.0", "迟到驻点队": "60.04"}

    book = load_workbook(io.BytesIO((await report(world, format="xlsx")).content))
    sheet = book["按联防队"]
    header = [c.value for c in sheet[2]]
    column = header.index("到场用时P50(秒)") + 1
    for row in range(3, 3 + len(AROUND_THE_TARGET)):
        cell = sheet.cell(row=row, column=column)
        assert cell.value == AROUND_THE_TARGET[sheet.cell(row=row, column=1).value]
        # General: every digit shown, none rounded away by a fixed number of decimals.
        assert cell.number_format == "General"
    details = book["警情明细"]
    header = [c.value for c in details[2]]
    elapsed = [
        r[header.index("一梯队用时(秒)")] for r in details.iter_rows(min_row=3, values_only=True)
    ]
    outcome = [
        r[header.index("一梯队结果")] for r in details.iter_rows(min_row=3, values_only=True)
    ]
    assert list(zip(elapsed, outcome, strict=True)) == [
        (59.96, "达标"),
        (60.0, "达标"),
        (60.04, "超时"),
    ]


ROOT = Path(__file__).parents[2]


def page_words(prefix: str) -> dict[str, str]:
    """The pages' Chinese for every key ``<prefix>.<name>``, read from web/src/shared/i18n.js."""
    text = (ROOT / "web/src/shared/i18n.js").read_text(encoding="utf-8")
    zh = text[text.index("const zh = {") : text.index("const en = {")]
    return {m[1]: m[2] for m in re.finditer(rf"'{re.escape(prefix)}\.(\w+)': '([^']*)'", zh)}


def test_the_server_names_categories_and_tiers_as_the_pages_and_the_docs_do() -> None:
    assert set(CATEGORY_LABELS) == set(Category)
    assert page_words("category") == CATEGORY_LABELS
    api = (ROOT / "docs/api.md").read_text(encoding="utf-8")
    listed = api[api.index("Categories: ") :].split("\n\n", 1)[0]
    assert dict(re.findall(r"`(\w+)` \(([^)]+)\)", listed)) == CATEGORY_LABELS
    tiers, short = page_words("tier"), page_words("tier.short")
    assert {tier: tiers[str(tier)] for tier in TIER_LABELS} == TIER_LABELS
    assert {tier: short[str(tier)] for tier in TIER_LABELS} == exports.TIER_NAMES


async def test_the_exports_name_a_category_as_the_page_does(
    world: World,
) -> None:
    await world.team("fixed_post", name="A驻点队")
    operator = await world.operator()
    await world.report(operator, category="violence")
    await world.report(operator, category="extremism")
    book = load_workbook(
        io.BytesIO((await report(world, category="violence", format="xlsx")).content)
    )
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert about["筛选条件"] == "类别：暴力袭击"
    details = book["警情明细"]
    header = [c.value for c in details[2]]
    (row,) = details.iter_rows(min_row=3, values_only=True)
    assert row[header.index("类别")] == "暴力袭击"
    header, rows = csv_rows(await report(world, category="extremism", format="csv"))
    assert {r[header.index("筛选条件")] for r in rows} == {"类别：个人极端"}


async def test_one_incident_with_its_timeline(world: World) -> None:
    day = await seed(world)
    i2 = day.incidents[1]
    auditor = await world.account("auditor")
    reply = await world.http.get(f"/api/v1/reports/incidents/{i2['id']}", headers=auditor.headers)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["village_name"] == "上元村"
    assert [(t["tier"], t["outcome"], t["elapsed_s"]) for t in body["tiers"]] == [
        (1, "met", 60),
        (2, "breached", 200),
        (3, "breached", None),
    ]
    outcomes = {t["team_name"]: (t["outcome"], t["time_to_arrival_s"]) for t in body["teams"]}
    assert outcomes == {
        "A驻点队": ("met", 60),
        "B机动队": ("breached", 90),
        "P巡逻警力": ("breached", 200),
        "R处突警力": ("breached", None),
    }
    types = [e["type"] for e in body["timeline"]]
    assert types[0] == "reported" and types[-1] == "closed"
    # The operator's radio arrival of P records the arrival alone: no accept for its phone.
    assert types.count("arrived") == 3 and types.count("accepted") == 2
    assert {"dispatched", "delivered", "escalated", "breached"} <= set(types)
    p = day.dispatch(i2, "P")
    of_p = [e for e in body["timeline"] if e["data"].get("dispatch_id") == p]
    assert [(e["type"], e["actor_name"]) for e in of_p] == [
        ("dispatched", None),
        ("delivered", day.leaders["P"].name),
        ("shown", day.leaders["P"].name),
        ("arrived", day.operator and day.operator.name),
    ]
    assert of_p[-1]["data"]["source"] == "operator"
    times = [e["at"] for e in body["timeline"]]
    assert times == sorted(times)
    accepted = next(e for e in body["timeline"] if e["type"] == "accepted")
    assert accepted["actor_name"] == day.leaders["A"].name


async def test_a_team_renamed_since_is_named_in_the_record_as_it_was_when_alerted(
    world: World,
) -> None:
    """甲驻点队 was sent to an incident and renamed 乙驻点队 afterwards: the record of the
    incident says both, the name it has now and the one it was alerted under, which its
    dispatched event keeps."""
    admin = await world.admin()
    operator = await world.operator()
    team = await world.team("fixed_post", name="甲驻点队")
    incident = await world.report(operator)
    world.clock.advance(120)
    await settle(world)
    reply = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"name": "乙驻点队"}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    auditor = await world.account("auditor")
    reply = await world.http.get(
        f"/api/v1/reports/incidents/{incident['id']}", headers=auditor.headers
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [(t["team_name"], t["team_name_when_alerted"]) for t in body["teams"]] == [
        ("乙驻点队", "甲驻点队")
    ]
    (dispatched,) = [e for e in body["timeline"] if e["type"] == "dispatched"]
    assert dispatched["data"]["team_name"] == "甲驻点队"
    assert dispatched["data"]["team_id"] == team["id"]


def filled_bins(histogram: Any) -> dict[str, int]:
    """A histogram sheet's bins that hold arrivals, by their label."""
    return {
        row[2]: row[3]
        for row in histogram.iter_rows(min_row=3, values_only=True)
        if row[2] is not None and row[3]
    }


async def test_a_tier_at_its_deadlines_very_instant_with_nobody_there_is_pending(
    world: World,
) -> None:
    """At the deadline's instant a team arriving still meets it, and the timer breaches a tier
    only beyond it; the report judged it breached already then, nobody having come. It is
    pending then in the figures, the exclusions and the record, and breached a microsecond on."""
    team = await world.team("fixed_post", name="A驻点队")
    operator = await world.operator()
    incident = await world.report(operator)
    world.clock.advance(60)  # tier 1's deadline, to the microsecond
    await settle(world)
    stored = await world.incident(operator, incident["id"])
    assert world.clock.now() == datetime.fromisoformat(stored["chain"][0]["deadline"])
    assert stored["chain"][0]["status"] == "pending"  # the timer has not breached it

    async def judged() -> tuple[str, str, str, str, str]:
        by_tier = (await report(world)).json()
        tier1 = next(t for t in by_tier["totals"] if t["tier"] == 1)
        counted = "pending" if tier1["pending"] == 1 else "breached" if tier1["breached"] else "?"
        (excluded,) = [e["outcome"] for e in by_tier["exclusions"] if e["tier"] == 1]
        by_team = (await report(world, group_by=["team"], team_id=team["id"])).json()
        ((group,),) = [g["groups"] for g in by_team["groupings"]]
        row = next(t for t in group["tiers"] if t["tier"] == 1)
        team_counted = "pending" if row["pending"] == 1 else "breached" if row["breached"] else "?"
        auditor = await world.account("auditor")
        record = await world.http.get(
            f"/api/v1/reports/incidents/{incident['id']}", headers=auditor.headers
        )
        assert record.status_code == 200, record.text
        body = record.json()
        in_record = next(t["outcome"] for t in body["tiers"] if t["tier"] == 1)
        (team_outcome,) = [o["outcome"] for o in body["teams"]]
        return counted, excluded, team_counted, in_record, team_outcome

    async def exported_reasons() -> tuple[str, str]:
        header, rows = csv_rows(await report(world, format="csv", part="exclusions"))
        tier = header.index("梯队")
        (in_csv,) = [r[header.index("原因")] for r in rows if r[tier].startswith("一梯队")]
        book = load_workbook(io.BytesIO((await report(world, format="xlsx")).content))
        sheet = list(book["未到场清单"].iter_rows(min_row=2, values_only=True))
        tier, reason = sheet[0].index("梯队"), sheet[0].index("原因")
        (in_book,) = [r[reason] for r in sheet[1:] if str(r[tier]).startswith("一梯队")]
        return in_csv, in_book

    assert await judged() == ("pending",) * 5
    # Its deadline is no longer ahead, though not passed either: "时限未到" was not so.
    assert await exported_reasons() == ("时限未过",) * 2
    # A microsecond on, breached by its times, whether or not the timer has come round yet.
    world.clock.advance(0.000001)
    assert await judged() == ("breached",) * 5
    assert await exported_reasons() == ("无人到场",) * 2
