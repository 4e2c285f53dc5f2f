"""The figures per team of teams an operator added by hand (人工加派). A team sent after its
tier's deadline could never have met it: per team it is timed and judged from its own alert,
against its tier's target, and every form of the report says so. A team added by the deadline
is judged as any other, and the tier's own judgement stays on the incident's clock."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

from openpyxl import load_workbook

from dispatch.schemas import DISPLAY_TZ
from tests.incidents.test_added_dispatch import add, at
from tests.reports.test_response_times import csv_rows, report, settle
from tests.support import World

FROM_ALERT = "人工加派(自接警起算)"


async def seed(world: World) -> dict[str, Any]:
    """One incident, no patrol covering it (tier 2's target 180 s). Seconds after the report:
    60 the operator adds patrol Early, which arrives at 200 (late for the tier); 240, past
    the tier's deadline, Late and Never; Late arrives at 410, 170 s after its own alert;
    closed at 415, before Never's own 180 s ran out (420)."""
    world.long_logins()
    await world.team("fixed_post")
    patrols = {
        name: await world.team("patrol", *at(4000, azimuth), radius_m=1000, name=name)
        for name, azimuth in (("Early巡逻", 90), ("Late巡逻", 180), ("Never巡逻", 270))
    }
    leaders = {name: await world.leader(team) for name, team in patrols.items()}
    operator = await world.operator()
    incident = await world.report(operator)
    tier_two = next(t for t in incident["chain"] if t["tier"] == 2)
    assert tier_two["target_s"] == 180 and not tier_two["covered"]
    start = datetime.fromisoformat(incident["reported_at"])

    async def at_second(offset: float) -> None:
        target = start + timedelta(seconds=offset)
        world.clock.advance((target - world.clock.now()).total_seconds())
        await settle(world)

    async def added(name: str) -> dict[str, Any]:
        reply = await add(world, operator, incident["id"], patrols[name]["id"], "报警人要求")
        assert reply.status_code == 201, reply.text
        view: dict[str, Any] = reply.json()
        return view

    await at_second(60)
    view = await added("Early巡逻")
    await at_second(200)
    assert await world.arrive(view, patrols["Early巡逻"], leaders["Early巡逻"]) == 200
    await at_second(240)
    await added("Late巡逻")
    view = await added("Never巡逻")
    await at_second(410)
    assert await world.arrive(view, patrols["Late巡逻"], leaders["Late巡逻"]) == 200
    await at_second(415)
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert reply.status_code == 200, reply.text
    await at_second(500)
    day = start.astimezone(DISPLAY_TZ).date()
    return {
        "incident": incident,
        "patrols": patrols,
        "period": {"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
    }


def figures(body: dict[str, Any], by: str) -> dict[str, dict[str, Any]]:
    grouping = next(g for g in body["groupings"] if g["by"] == by)
    return {g["label"]: f for g in grouping["groups"] for f in g["tiers"] if f["tier"] == 2}


async def test_a_team_added_after_its_tiers_deadline_is_judged_from_its_own_alert(
    world: World,
) -> None:
    seeded = await seed(world)
    period, patrols = seeded["period"], seeded["patrols"]
    body = (await report(world, **period, group_by=["tier", "team"])).json()

    teams = figures(body, "team")
    judged = {
        name: (
            f["met"],
            f["breached"],
            f["cancelled"],
            f["judged_from_alert"],
            f["time_to_arrival"]["p50_s"],
        )
        for name, f in teams.items()
    }
    assert judged == {
        # Added at 60 s, before the deadline: it covered the tier, and is late at 200 s.
        "Early巡逻": (0, 1, 0, 0, 200),
        # Added at 240 s, on scene 170 s after its own alert: within its 3 minutes.
        "Late巡逻": (1, 0, 0, 1, 170),
        # Added at 240 s, the incident closed before its own 3 minutes ran out.
        "Never巡逻": (0, 0, 1, 1, None),
    }
    # The tier stays on the incident's clock: its first arrival, 200 s, breached it.
    tier_two = figures(body, "tier")["二梯队 巡逻警力"]
    assert (tier_two["met"], tier_two["breached"], tier_two["judged_from_alert"]) == (0, 1, 0)
    assert tier_two["time_to_arrival"]["p50_s"] == 200

    # The team left without an arrival is listed as judged from its alert.
    never = (await report(world, **period, team_id=patrols["Never巡逻"]["id"])).json()
    assert [(e["outcome"], e["judged_from_alert"]) for e in never["exclusions"]] == [
        ("cancelled", True)
    ]
    assert never["totals"][0]["judged_from_alert"] == 1

    # The histogram of Late's arrivals counts its 170 s, in (160, 170] by 10 s bins.
    histogram = (
        await world.http.get(
            "/api/v1/reports/arrival-histogram",
            params={**period, "team_id": patrols["Late巡逻"]["id"], "bin_s": 10},
            headers=(await world.account("auditor")).headers,
        )
    ).json()
    assert [b["from_s"] for b in histogram["bins"] if b["count"]] == [160]

    # The record of the incident, team by team.
    auditor = await world.account("auditor")
    record = await world.read(f"/api/v1/reports/incidents/{seeded['incident']['id']}", auditor)
    lines = {
        t["team_name"]: (
            t["added_by"],
            t["judged_from_alert"],
            t["outcome"],
            t["time_to_arrival_s"],
        )
        for t in record["teams"]
        if t["tier"] == 2
    }
    assert lines == {
        "Early巡逻": ("operator", False, "breached", 200),
        "Late巡逻": ("operator", True, "met", 170),
        "Never巡逻": ("operator", True, "cancelled", None),
    }


async def test_the_files_say_which_teams_were_judged_from_their_own_alert(world: World) -> None:
    seeded = await seed(world)
    period, patrols = seeded["period"], seeded["patrols"]

    header, rows = csv_rows(await report(world, **period, group_by=["team"], format="csv"))
    by_team = {r[1]: r for r in rows if r[0] == "按联防队" and r[2] == "二梯队 巡逻警力"}
    column = header.index(FROM_ALERT)
    assert {name: (r[header.index("达标")], r[column]) for name, r in by_team.items()} == {
        "Early巡逻": ("0", "0"),
        "Late巡逻": ("1", "1"),
        "Never巡逻": ("0", "1"),
    }

    never = {**period, "team_id": patrols["Never巡逻"]["id"]}
    header, rows = csv_rows(await report(world, **never, format="csv", part="exclusions"))
    assert [r[header.index("原因")] for r in rows] == [
        "时限前结案，无人需到场（人工加派，自接警起算）"
    ]

    late = {**period, "team_id": patrols["Late巡逻"]["id"]}
    book = load_workbook(io.BytesIO((await report(world, **late, format="xlsx")).content))
    sheet = book["按联防队"]
    header = [c.value for c in sheet[2]]
    row = [c.value for c in sheet[3]]
    assert (row[0], row[header.index("达标")], row[header.index(FROM_ALERT)]) == ("Late巡逻", 1, 1)
    details = list(book["警情明细"].iter_rows(min_row=3, values_only=True))
    assert [r[5:] for r in details] == [("达标（人工加派，自接警起算）", 170, 180)]

    book = load_workbook(io.BytesIO((await report(world, **never, format="xlsx")).content))
    excluded = list(book["未到场清单"].iter_rows(min_row=3, values_only=True))
    assert [r[5] for r in excluded] == ["时限前结案，无人需到场（人工加派，自接警起算）"]


async def test_a_tier_reached_only_by_a_team_added_after_its_deadline(world: World) -> None:
    """No patrol covers the place; the operator adds one at 240 s, past tier 2's 180 s. It
    accepts at 250 and arrives at 410. The tier stays uncovered and breached, but it has an
    arrival: the team's, counted from the report (410 s) in the tier's time to arrival, and
    not an exclusion; the team's hops are the tier's segments as any dispatch's are."""
    world.long_logins()
    await world.team("fixed_post")
    patrol = await world.team("patrol", *at(4000, 90), radius_m=1000, name="Late巡逻")
    leader = await world.leader(patrol)
    operator = await world.operator()
    incident = await world.report(operator)
    start = datetime.fromisoformat(incident["reported_at"])

    async def at_second(offset: float) -> None:
        world.clock.advance((start + timedelta(seconds=offset) - world.clock.now()).total_seconds())
        await settle(world)

    await at_second(240)
    reply = await add(world, operator, incident["id"], patrol["id"], None)
    assert reply.status_code == 201, reply.text
    view = reply.json()
    dispatch = next(d["id"] for d in view["dispatches"] if d["team_id"] == patrol["id"])
    await at_second(250)
    path = f"/api/v1/dispatches/{dispatch}/accept"
    accepted = await world.http.post(path, headers=leader.headers)
    assert accepted.status_code == 200, accepted.text
    await at_second(410)
    assert await world.arrive(view, patrol, leader) == 200
    await at_second(500)
    day = start.astimezone(DISPLAY_TZ).date()
    period = {"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()}
    body = (await report(world, **period, group_by=["tier", "team"])).json()

    tier_two = figures(body, "tier")["二梯队 巡逻警力"]
    counts = ("with_arrival", "without_arrival", "met", "breached", "uncovered")
    assert {k: tier_two[k] for k in (*counts, "uncovered_breached")} == {
        "with_arrival": 1,
        "without_arrival": 0,
        "met": 0,
        "breached": 1,
        "uncovered": 1,
        "uncovered_breached": 1,
    }
    assert tier_two["time_to_arrival"]["p50_s"] == 410
    assert tier_two["alert_to_delivery"]["p50_s"] == 10
    assert tier_two["delivery_to_acceptance"]["p50_s"] == 0
    assert tier_two["acceptance_to_arrival"]["p50_s"] == 160
    assert [e for e in body["exclusions"] if e["tier"] == 2] == []
    # Per team it met its own 3 minutes: 170 s from its alert.
    team = figures(body, "team")["Late巡逻"]
    assert (team["met"], team["judged_from_alert"], team["time_to_arrival"]["p50_s"]) == (1, 1, 170)
