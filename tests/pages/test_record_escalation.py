"""An incident's record read after the fact (the report page's exclusions, the console's 历史警情)
says how its late tier 1 was escalated: when, why, how wide, which teams it added or that it found
none, which teams came from it, when each tier breached and who closed the incident."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from playwright.async_api import Browser, Locator, expect

from dispatch.schemas import DISPLAY_TZ
from tests.incidents.test_escalation import at
from tests.pages.conftest import Opened
from tests.pages.test_reports_office import open_report
from tests.support import Account, World


def local(incident: dict[str, Any], seconds: float) -> str:
    """The record's time (Beijing, to the second) ``seconds`` after the incident's report."""
    reported = datetime.fromisoformat(incident["reported_at"]).astimezone(DISPLAY_TZ)
    return (reported + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


async def close(world: World, operator: Account, incident: dict[str, Any]) -> None:
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert reply.status_code == 200, reply.text


async def closed_once_tier_one_breached(
    world: World, operator: Account, incidents: tuple[dict[str, Any], ...]
) -> None:
    """Each incident, once the server has seen its tier 1 breach, closed by the operator."""
    for incident in incidents:
        await world.wait_for(
            operator, incident["id"], lambda i: i["chain"][0]["status"] == "breached"
        )
        await close(world, operator, incident)


async def report_of_the_day(
    browser: Browser, contexts: Opened, world: World, incident: dict[str, Any]
) -> Any:
    """The report page on the day (Beijing) the incident was reported."""
    day = datetime.fromisoformat(incident["reported_at"]).astimezone(DISPLAY_TZ).date()
    return await open_report(browser, contexts, world, day.isoformat())


async def open_record(page: Any, incident: dict[str, Any]) -> Locator:
    row = page.locator(f'#exclusions tr[data-incident-id="{incident["id"]}"][data-tier="1"]')
    await row.get_by_role("button", name=incident["id"]).click()
    record = page.locator("#record")
    await expect(record).to_have_attribute("data-incident-id", incident["id"])
    await expect(record).to_have_attribute("data-state", "ready")
    return record


async def test_the_record_says_how_a_late_tier_one_was_escalated_and_who_closed_it(
    world: World, browser: Browser, contexts: Opened
) -> None:
    covering = await world.team("fixed_post", name="甲驻点队")
    # 800 m east: its 500 m zone does not cover the place, the escalation's 1000 m ring does.
    ring_team = await world.team("mobile", *at(800, 90), name="乙机动队")
    # Each with a leader to alert: the record says nothing of a team whose alert reached nobody.
    for team in (covering, ring_team):
        await world.leader(team)
    operator = await world.operator()
    widened = await world.report(operator)
    assert [d["team_id"] for d in widened["dispatches"]] == [covering["id"]]
    # 3 km north: no tier-1 team covers it, nor is any within the ring.
    alone = await world.report(operator, *at(3000, 0))
    assert alone["dispatches"] == []

    world.clock.advance(21)
    await world.wait_for(operator, widened["id"], lambda i: len(i["dispatches"]) == 2)
    world.clock.advance(40)
    await closed_once_tier_one_breached(world, operator, (widened, alone))

    page = await report_of_the_day(browser, contexts, world, widened)

    record = await open_record(page, widened)
    steps = record.locator(".record-events li")
    await expect(steps).to_have_text(
        [
            f"{local(widened, 20)} 扩大范围（1000 米）：20 秒内无一梯队队伍接警，"
            "加派 1 支队伍 乙机动队",
            f"{local(widened, 60)} 一梯队超时",
            f"{local(widened, 61)} 结案（{operator.name}）",
        ]
    )
    # The team the escalation added is marked so, as on the console's card.
    await expect(record.locator(".record-dispatch").nth(1)).to_contain_text("乙机动队")
    await expect(record.locator(".record-dispatch").nth(1).locator(".meta")).to_contain_text(
        "扩大范围"
    )
    await expect(record.locator(".record-dispatch").nth(0).locator(".meta")).not_to_contain_text(
        "扩大范围"
    )

    await page.get_by_role("button", name="English").click()
    await expect(steps).to_have_text(
        [
            f"{local(widened, 20)} Wider ring (1000 m): no tier-1 team accepted within 20 s, "
            "1 more team 乙机动队",
            f"{local(widened, 60)} Tier 1 breached",
            f"{local(widened, 61)} Closed ({operator.name})",
        ]
    )
    await page.get_by_role("button", name="中文").click()

    # Tier 1 was covered here; tiers 2 and 3 by nobody (no police team in this town).
    tiers = record.locator(".record-tiers tbody tr")
    await expect(tiers.nth(0)).to_contain_text("超时")
    await expect(tiers.nth(0)).not_to_contain_text("无覆盖")
    await expect(tiers.nth(1)).to_contain_text("无覆盖")

    record = await open_record(page, alone)
    # No tier-1 team covers the place: the record says so beside the breach.
    await expect(record.locator(".record-tiers tbody tr").nth(0)).to_contain_text("超时 · 无覆盖")
    await expect(record.locator(".record-events li")).to_have_text(
        [
            f"{local(alone, 0)} 扩大范围（1000 米）：此处无一梯队队伍覆盖，范围内没有可加派的队伍",
            f"{local(alone, 60)} 一梯队超时",
            f"{local(alone, 61)} 结案（{operator.name}）",
        ]
    )
