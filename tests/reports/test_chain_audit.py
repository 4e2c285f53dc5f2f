"""The report against incidents made through the real services at exactly known times.

Day D in Beijing time; all times are seconds after each incident's report. Teams: T1 (fixed
post, tier 1), M (mobile, tier 1), E (fixed post 700 m away: tier 1 by escalation only),
P (patrol), R (response). Names start with = @ + - as a spreadsheet's formulas do.

    X  reported D 23:59:30 (every arrival falls on D+1, after Beijing midnight): T1 accepts at
       10 and arrives at exactly 60.000 (met) · M arrives at 61 (late) · P arrives at exactly
       180.000 (met) · R never comes · closed at 400
    Y  reported D+1 00:10:30: nobody of tier 1 accepts, so at 20 the ring alerts E, who never
       comes · T1 arrives at 60.000001 (late) · P arrives at 300 (late) · R arrives at exactly
       300.000 (met) · closed at 500
    Z  reported D+1 00:30:30, 1.5 km east, where no tier-1 team covers and the ring finds
       nobody: P arrives at 120 (met), R never · left open past every deadline
    W  reported D+1 01:00:30 at the same far place, closed at 30: every tier cancelled
    V  reported D+1 01:30:30: at 20 the ring alerts E, who arrives at 70, 50 s after its own
       alert but 70 s after the report (late) · P arrives at 100 (met) · R at 200 (met) ·
       closed at 300

Afterwards T1 is renamed and M retired.

Hand computation (nearest rank: P50 = rank ceil(n/2), P90 = rank ceil(0.9 n)):
    period D (from=D, to=D+1: the end's date excluded): X only.
        tier 1: 1 incident, met 1 (60.000 s meets), P50 = P90 = max = 60
        tier 2: met 1 (180.000 s meets); tier 3: breached 1 (nobody came)
    period D+1 (from=D+1, to=D+2): Y, Z, W, V.
        tier 1: 4 incidents, arrivals [60.000001, 70]: met 0, breached 3 (Y, V late; Z
                nobody), cancelled 1 (W), uncovered 2 (Z, W), of them breached 1 (Z);
                P50 = rank 1 = 60.000001, P90 = rank 2 = 70
        tier 2: arrivals [100, 120, 300]: met 2, breached 1 (Y), cancelled 1; P50 120, P90 300
        tier 3: arrivals [200, 300]: met 2 (300.000 meets), breached 1 (Z), cancelled 1;
                P50 200, P90 300
    grouped by day over D..D+1: D and D+1 as above, their counts adding up to the totals.
    per team over D..D+1 (a measurement per dispatch):
        T1 (renamed): X met 60, Y breached 60.000001, V breached (nobody) -> met 1, breached 2
        M (retired):  X breached 61, Y and V nobody -> met 0, breached 3
        E (escalated): Y nobody, V 70 against 60 from the report -> met 0, breached 2
        P: X 180 met, Y 300 late, Z 120 met, W cancelled, V 100 met -> met 3, breached 1
        R: X nobody, Y 300 met, Z nobody, W cancelled, V 200 met -> met 2, breached 2
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from openpyxl import load_workbook

from dispatch.reports.service import TIER_LABELS
from dispatch.schemas import DISPLAY_TZ
from tests.reports.test_response_times import near, settle
from tests.support import QINGXI, Account, World

REPORTS = "/api/v1/reports/response-times"
NAMES = {
    "T1": "=T1驻点队",
    "M": "@M机动队",
    "E": "=E驻点队",
    "P": "+P巡逻警力",
    "R": "-R处突警力",
}
# As the report labels them afterwards: T1 renamed, M retired.
LABELS = {**NAMES, "T1": "T1新名", "M": "@M机动队（已撤销）"}


class Chain:
    """The teams, their leaders and the incidents, and the local dates D, D+1 and D+2."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.teams: dict[str, dict[str, Any]] = {}
        self.leaders: dict[str, Account] = {}
        self.incidents: dict[str, dict[str, Any]] = {}
        self.operator: Account | None = None
        self.days: list[str] = []

    async def at(self, start: datetime, offset: timedelta) -> None:
        """The clock exactly ``offset`` after ``start``, the server's timers caught up."""
        target = start + offset
        self.world.clock.advance((target - self.world.clock.now()).total_seconds())
        assert self.world.clock.now() == target
        await settle(self.world)

    async def report(self, name: str, where: tuple[float, float]) -> datetime:
        assert self.operator is not None
        self.incidents[name] = await self.world.report(self.operator, *where)
        return self.world.clock.now()

    async def act(self, incident: str, team: str, verb: str) -> None:
        team_id = self.teams[team]["id"]
        found = await self.world.incident(self.leaders[team], self.incidents[incident]["id"])
        dispatch = next(d["id"] for d in found["dispatches"] if d["team_id"] == team_id)
        reply = await self.world.http.post(
            f"/api/v1/dispatches/{dispatch}/{verb}", headers=self.leaders[team].headers
        )
        assert reply.status_code == 200, reply.text

    async def close(self, incident: str) -> None:
        assert self.operator is not None
        reply = await self.world.http.post(
            f"/api/v1/incidents/{self.incidents[incident]['id']}/close",
            headers=self.operator.headers,
        )
        assert reply.status_code == 200, reply.text


def s(seconds: float, micro: int = 0) -> timedelta:
    return timedelta(seconds=seconds, microseconds=micro)


async def build(world: World) -> Chain:
    world.long_logins()
    chain = Chain(world)
    chain.teams = {
        "T1": await world.team("fixed_post", name=NAMES["T1"]),
        "M": await world.team("mobile", name=NAMES["M"]),
        "E": await world.team("fixed_post", *near(700, 0), name=NAMES["E"]),
        "P": await world.team("patrol", radius_m=3000, name=NAMES["P"]),
        "R": await world.team("response", radius_m=6000, name=NAMES["R"]),
    }
    chain.leaders = {k: await world.leader(t) for k, t in chain.teams.items()}
    chain.operator = await world.operator()
    here, far = QINGXI, near(1500, 90)

    # 23:59:30 in Beijing time, on the next day that has one ahead.
    now = world.clock.now().astimezone(DISPLAY_TZ)
    late = now.replace(hour=23, minute=59, second=30, microsecond=0)
    if late <= now:
        late += timedelta(days=1)
    world.clock.advance((late - now).total_seconds())
    chain.days = [(late.date() + timedelta(days=n)).isoformat() for n in range(3)]

    x = await chain.report("X", here)
    await chain.at(x, s(10))
    await chain.act("X", "T1", "accept")
    await chain.at(x, s(60))
    await chain.act("X", "T1", "arrive")
    await chain.at(x, s(61))
    await chain.act("X", "M", "arrive")
    await chain.at(x, s(180))
    await chain.act("X", "P", "arrive")
    await chain.at(x, s(400))
    await chain.close("X")

    await chain.at(late, s(11 * 60))
    y = await chain.report("Y", here)
    await chain.at(y, s(20))  # nobody of tier 1 has accepted: the ring alerts E
    # A microsecond late: the timer has breached the tier, at its deadline, by the arrival.
    await chain.at(y, s(60, 1))
    await chain.act("Y", "T1", "arrive")
    await chain.at(y, s(300))
    await chain.act("Y", "P", "arrive")
    await chain.act("Y", "R", "arrive")
    await chain.at(y, s(500))
    await chain.close("Y")

    await chain.at(late, s(31 * 60))
    z = await chain.report("Z", far)
    await chain.at(z, s(120))
    await chain.act("Z", "P", "arrive")
    await chain.at(z, s(600))

    await chain.at(late, s(61 * 60))
    w = await chain.report("W", far)
    await chain.at(w, s(30))
    await chain.close("W")

    await chain.at(late, s(91 * 60))
    v = await chain.report("V", here)
    await chain.at(v, s(20))
    await chain.at(v, s(70))
    await chain.act("V", "E", "arrive")
    await chain.at(v, s(100))
    await chain.act("V", "P", "arrive")
    await chain.at(v, s(200))
    await chain.act("V", "R", "arrive")
    await chain.at(v, s(300))
    await chain.close("V")
    await chain.at(v, s(600))

    admin = await world.admin()
    reply = await world.http.patch(
        f"/api/v1/teams/{chain.teams['T1']['id']}", json={"name": "T1新名"}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    reply = await world.http.delete(
        f"/api/v1/teams/{chain.teams['M']['id']}", headers=admin.headers
    )
    assert reply.status_code == 204, reply.text
    return chain


COUNTS = (
    "incidents",
    "with_arrival",
    "without_arrival",
    "met",
    "breached",
    "cancelled",
    "pending",
    "uncovered",
    "uncovered_breached",
)


def counts(figures: dict[str, Any]) -> tuple[int, ...]:
    return tuple(figures[k] for k in COUNTS)


def c(
    n: int, arrived: int, met: int, late: int, off: int, bare: int = 0, bare_late: int = 0
) -> tuple[int, ...]:
    """The counts of COUNTS: nothing pending in this chain."""
    return (n, arrived, n - arrived, met, late, off, 0, bare, bare_late)


def times(n: int, p50: float | None, p90: float | None, most: float | None) -> dict[str, Any]:
    return {"n": n, "p50_s": p50, "p90_s": p90, "max_s": most}


async def get(world: World, by: Account, **params: Any) -> Any:
    reply = await world.http.get(REPORTS, params=params, headers=by.headers)
    assert reply.status_code == 200, reply.text
    return reply


def by_tier(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {f["tier"]: f for f in report["totals"]}


async def test_every_figure_of_the_chain_equals_the_hand_computation(world: World) -> None:
    chain = await build(world)
    auditor = await world.account("auditor")
    d0, d1, d2 = chain.days

    # E was alerted by the escalation ring 20 s after the report, in Y and in V.
    for name in ("Y", "V"):
        record = await world.incident(auditor, chain.incidents[name]["id"])
        (escalated,) = [d for d in record["dispatches"] if d["team_id"] == chain.teams["E"]["id"]]
        assert escalated["ring"] == 1
        alerted = datetime.fromisoformat(escalated["alerted_at"])
        assert alerted - datetime.fromisoformat(record["reported_at"]) == s(20)

    first = (await get(world, auditor, **{"from": d0, "to": d1})).json()
    assert (first["period_from"], first["period_to"]) == (
        f"{d0}T00:00:00+08:00",
        f"{d1}T00:00:00+08:00",
    )
    tiers = by_tier(first)
    assert counts(tiers[1]) == c(1, 1, 1, 0, 0)
    assert tiers[1]["time_to_arrival"] == times(1, 60, 60, 60)
    assert counts(tiers[2]) == c(1, 1, 1, 0, 0)
    assert tiers[2]["time_to_arrival"] == times(1, 180, 180, 180)
    assert counts(tiers[3]) == c(1, 0, 0, 1, 0)
    assert [e["incident_id"] for e in first["exclusions"]] == [chain.incidents["X"]["id"]]

    second = (await get(world, auditor, **{"from": d1, "to": d2})).json()
    tiers = by_tier(second)
    assert counts(tiers[1]) == c(4, 2, 0, 3, 1, bare=2, bare_late=1)
    assert tiers[1]["time_to_arrival"] == times(2, 60.000001, 70, 70)
    assert tiers[1]["share_within_target"] == 0
    assert counts(tiers[2]) == c(4, 3, 2, 1, 1)
    assert tiers[2]["time_to_arrival"] == times(3, 120, 300, 300)
    assert counts(tiers[3]) == c(4, 2, 2, 1, 1)
    assert tiers[3]["time_to_arrival"] == times(2, 200, 300, 300)
    assert [t["share_within_target"] for t in (tiers[2], tiers[3])] == [2 / 3, 2 / 3]

    both = {"from": d0, "to": d2}
    whole = (await get(world, auditor, **both, group_by=["day", "team"])).json()
    by = {g["by"]: g["groups"] for g in whole["groupings"]}
    assert [g["key"] for g in by["day"]] == [d0, d1]
    for tier, total in by_tier(whole).items():
        rows = [counts(f) for g in by["day"] for f in g["tiers"] if f["tier"] == tier]
        assert tuple(map(sum, zip(*rows, strict=True))) == counts(total), tier
    teams = {g["label"]: g["tiers"][0] for g in by["team"]}
    assert set(teams) == set(LABELS.values())
    assert counts(teams[LABELS["T1"]]) == c(3, 2, 1, 2, 0)
    assert teams[LABELS["T1"]]["time_to_arrival"] == times(2, 60, 60.000001, 60.000001)
    assert counts(teams[LABELS["M"]]) == c(3, 1, 0, 3, 0)
    assert teams[LABELS["M"]]["time_to_arrival"] == times(1, 61, 61, 61)
    assert counts(teams[LABELS["E"]]) == c(2, 1, 0, 2, 0)
    assert teams[LABELS["E"]]["time_to_arrival"] == times(1, 70, 70, 70)
    assert counts(teams[LABELS["P"]]) == c(5, 4, 3, 1, 1)
    assert teams[LABELS["P"]]["time_to_arrival"] == times(4, 120, 300, 300)
    assert counts(teams[LABELS["R"]]) == c(5, 2, 2, 2, 1)

    # The CSV (Excel reads its BOM as UTF-8) and the workbook hold the JSON's rows, figure for
    # figure, the names that start as a formula does written as text.
    raw = (await get(world, auditor, **both, group_by=["day", "team"], format="csv")).content
    assert raw.startswith(b"\xef\xbb\xbf")
    header, *rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    figures = [header.index(name) for name in CSV_COUNTS]
    written = {(r[0], r[1], r[2]): tuple(int(r[i]) for i in figures) for r in rows}
    expected = {
        (sheet, "'" + label if label[0] in "=@+-" else label, TIER_LABELS[f["tier"]]): counts(f)
        for sheet, key in (("按日", "day"), ("按联防队", "team"))
        for g in by[key]
        for f in g["tiers"]
        for label in [g["label"]]
    }
    assert written == expected

    book = load_workbook(io.BytesIO((await get(world, auditor, **both, format="xlsx")).content))
    sheet = book["按联防队"]
    header = [cell.value for cell in sheet[2]]
    cells = list(sheet.iter_rows(min_row=3))
    assert {cell[0].data_type for cell in cells} == {"s"}
    columns = [header.index(name) for name in CSV_COUNTS]
    assert {(r[0].value, r[1].value): tuple(r[i].value for i in columns) for r in cells} == {
        (g["label"], TIER_LABELS[f["tier"]]): counts(f) for g in by["team"] for f in g["tiers"]
    }


# The CSV's and the workbook's names of COUNTS.
CSV_COUNTS = (
    "警情数",
    "有到场",
    "无到场",
    "达标",
    "超时",
    "取消",
    "未到时限",
    "无覆盖",
    "无覆盖且超时",
)
