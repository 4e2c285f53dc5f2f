"""The report page's list of exclusions (未到场清单) read by the assessment office: each row says
what the incident was, where and when, the teams alerted in its tier (the column was always
empty: an incident's tier has no team of its own), and its id opens the incident's record."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from playwright.async_api import Browser, expect

from tests.notifiers.receiver import Receiver
from tests.pages import test_console_operator
from tests.pages.conftest import Opened, ask_report, log_in, phone_context, sign_in
from tests.pages.test_console_history import (
    ask_records_of_an_incident_that_does_not_exist,
    the_record_fails_then_is_read_again,
)
from tests.pages.test_console_operator import notified
from tests.pages.test_reports_office import a_day_nobody_came, open_report
from tests.reports.test_response_times import Unreached, seed
from tests.support import QINGXI, World

# A server that texts (its gateway failing twice) and calls a webhook for an unacknowledged alert.
notifying = test_console_operator.notifying

# The list's columns by the names each cell shows on a phone, in both languages.
COLUMNS = {
    "zh": ["报警时间", "梯队", "联防队", "送达情况", "结果", "原因"],
    "en": ["Reported", "Tier", "Team", "Alert reached", "Outcome", "Reason"],
}


async def test_an_exclusion_names_its_incident_and_teams_and_opens_its_record(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day = await seed(world)
    i2, i3 = day.incidents[1], day.incidents[2]
    page = await open_report(browser, contexts, world, i2["reported_at"][:10])

    cancelled = page.locator(f'#exclusions tr[data-incident-id="{i3["id"]}"][data-tier="1"]')
    await expect(cancelled.locator("td").nth(0)).to_contain_text("打架斗殴")
    await expect(cancelled.locator(".excluded-where")).to_have_text("上元村")
    await expect(cancelled.locator("td").nth(1)).to_have_text(
        i3["reported_at"][:19].replace("T", " ")
    )
    await expect(cancelled.locator("td").nth(3)).to_have_text("A驻点队、B机动队")
    late = page.locator(f'#exclusions tr[data-incident-id="{i2["id"]}"][data-tier="3"]')
    await expect(late.locator("td").nth(3)).to_have_text("R处突警力")

    # The id opens the incident's record: its tiers and each team's hops at the server's times.
    await late.get_by_role("button", name=i2["id"]).click()
    record = page.locator("#record")
    await expect(record).to_have_attribute("data-state", "ready")
    await expect(record).to_have_attribute("data-incident-id", i2["id"])
    await expect(page.locator("#record-title")).to_have_text("警情记录 · 打架斗殴")
    await expect(record.locator(".record-facts")).to_contain_text("上元村")
    await expect(record.locator('.record-tiers tr[data-tier="1"]')).to_contain_text("达标")
    await expect(record.locator('.record-tiers tr[data-tier="3"]')).to_contain_text("超时")
    post = record.locator(f'.record-dispatch[data-team-id="{day.teams["A"]["id"]}"]')
    await expect(post).to_contain_text("A驻点队")
    for hop in ("alerted", "accepted", "arrived"):
        await expect(post.locator(f'.hop-done[data-hop="{hop}"]')).to_have_count(1)
    arrived = datetime.fromisoformat(i2["reported_at"]) + timedelta(seconds=60)
    await expect(post.locator('[data-hop="arrived"] time')).to_contain_text(
        arrived.strftime("%H:%M:%S")
    )
    response = record.locator(f'.record-dispatch[data-team-id="{day.teams["R"]["id"]}"]')
    await expect(response).to_contain_text("超时")

    # Both in English.
    await page.get_by_role("button", name="English").click()
    await expect(cancelled.locator("td").nth(3)).to_have_text("A驻点队, B机动队")
    await expect(cancelled.locator("td").nth(0)).to_contain_text("Fight")
    await expect(page.locator("#record-title")).to_have_text("Incident record · Fight")
    await expect(record.locator('.record-tiers tr[data-tier="1"]')).to_contain_text("Met")
    await page.get_by_role("button", name="Close").click()
    await expect(record).to_be_hidden()


async def test_an_exclusion_says_whether_each_teams_alert_was_delivered_or_only_not_accepted(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Nobody came: the list tells a team whose phone never had the alert (off, asleep with
    the page closed, out of the network) from one whose phone had it and nobody accepted, and
    from one that accepted and did not come, in either language."""
    unreached = await Unreached(world).happen()
    incident_id = unreached.incident["id"]
    page = await open_report(browser, contexts, world, unreached.day)
    rows = {
        tier: page.locator(f'#exclusions tr[data-incident-id="{incident_id}"][data-tier="{tier}"]')
        for tier in (1, 2, 3)
    }
    said = {
        1: "A驻点队：未送达；B机动队：已送达未接警",
        2: "P巡逻警力：已接警未到场",
        3: "R处突警力：未送达",
    }
    for tier, text in said.items():
        await expect(rows[tier].locator(".excluded-reached")).to_have_text(text)
    await page.get_by_role("button", name="English").click()
    await expect(rows[1].locator(".excluded-reached")).to_have_text(
        "A驻点队: not delivered; B机动队: delivered, not accepted"
    )
    await expect(rows[2].locator(".excluded-reached")).to_have_text(
        "P巡逻警力: accepted, not on scene"
    )
    await expect(page.locator("#exclusions th").nth(4)).to_have_text("Alert reached")

    # Per team (filtered by B): its own state alone.
    await page.get_by_role("button", name="中文").click()
    await ask_report(page, unreached.day, choose={"team": unreached.teams["B"]["id"]})
    own = page.locator(f'#exclusions tr[data-incident-id="{incident_id}"][data-tier="1"]')
    await expect(own.locator(".excluded-reached")).to_have_text("已送达未接警")


async def test_an_incidents_record_names_each_leader_reached_by_text_or_webhook_and_how(
    notifying: tuple[World, Receiver, Receiver], browser: Browser, contexts: Opened
) -> None:
    """Once an incident is closed the console shows its notifications no more: its record says
    which leader's phone did not acknowledge the alert and what came of each channel tried."""
    world, sms, hook = notifying
    leader = await test_console_operator.leader_with_a_phone_number(world)
    operator = await world.operator()
    incident = await world.report(operator, category="fight")
    world.clock.advance(15)
    await notified(world, operator, incident["id"], 2)
    world.clock.advance(1)
    for _ in range(250):
        reply = await world.http.get(
            f"/api/v1/incidents/{incident['id']}/notifications", headers=operator.headers
        )
        if all(n["status"] != "pending" for n in reply.json()):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the text was never given up")
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert reply.status_code == 200, reply.text
    auditor = await world.account("auditor")
    reply = await world.http.get(
        f"/api/v1/reports/incidents/{incident['id']}", headers=auditor.headers
    )
    told = [e for e in reply.json()["timeline"] if e["type"] in ("notified", "notify_failed")]
    assert {(e["type"], e["data"]["channel"], e["leader_name"]) for e in told} == {
        ("notified", "webhook", leader.name),
        ("notify_failed", "sms", leader.name),
    }

    page = await open_report(browser, contexts, world, incident["reported_at"][:10])
    row = page.locator(f'#exclusions tr[data-incident-id="{incident["id"]}"][data-tier="1"]')
    await row.get_by_role("button", name=incident["id"]).click()
    events = page.locator("#record .record-events")
    await expect(events.locator('[data-type="notify_failed"]')).to_contain_text(
        f"三中驻点队 {leader.name}未确认接收，短信发送失败（尝试 2 次）"
    )
    await expect(events.locator('[data-type="notified"]')).to_contain_text(
        f"三中驻点队 {leader.name}未确认接收，Webhook已发送"
    )
    await page.get_by_role("button", name="English").click()
    await expect(events.locator('[data-type="notify_failed"]')).to_contain_text(
        f"三中驻点队 {leader.name} did not acknowledge: SMS failed after 2 attempts"
    )
    await expect(events.locator('[data-type="notified"]')).to_contain_text(
        f"三中驻点队 {leader.name} did not acknowledge: Webhook sent"
    )
    assert len(sms.requests) == 2 and len(hook.requests) == 1


async def test_a_record_the_report_page_cannot_read_says_what_failed_and_is_read_again(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day = await seed(world)
    i2 = day.incidents[1]
    page = await open_report(browser, contexts, world, i2["reported_at"][:10])
    late = page.locator(f'#exclusions tr[data-incident-id="{i2["id"]}"][data-tier="3"]')

    await ask_records_of_an_incident_that_does_not_exist(page)
    await late.get_by_role("button", name=i2["id"]).click()
    await the_record_fails_then_is_read_again(page, "#record", i2["id"])
    await expect(page.locator("#record-title")).to_have_text("警情记录 · 打架斗殴")


async def test_the_next_user_of_the_report_page_sees_nothing_of_the_one_who_signed_out(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Signing out left the record the auditor had opened, and his report, on the page: whoever
    signed in next found them there."""
    day = await seed(world)
    i2 = day.incidents[1]
    page = await open_report(browser, contexts, world, i2["reported_at"][:10])
    late = page.locator(f'#exclusions tr[data-incident-id="{i2["id"]}"][data-tier="3"]')
    await late.get_by_role("button", name=i2["id"]).click()
    record = page.locator("#record")
    await expect(record).to_have_attribute("data-state", "ready")

    await page.get_by_role("button", name="退出").click()
    await expect(page.locator("#login")).to_be_visible()
    await expect(record).to_be_hidden()
    await expect(page.locator("#record-body")).to_be_empty()
    await expect(page.locator("#exclusions tr[data-incident-id]")).to_have_count(0)

    await sign_in(page, await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await expect(record).to_be_hidden()


async def test_an_exclusion_outside_any_village_is_placed_by_its_coordinates(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day, incident_id = await a_day_nobody_came(world)
    page = await open_report(browser, contexts, world, day)
    row = page.locator(f'#exclusions tr[data-incident-id="{incident_id}"][data-tier="1"]')
    lon, lat = QINGXI
    await expect(row.locator(".excluded-where")).to_have_text(
        f"经度 {lon:.6f}，纬度 {lat:.6f}（WGS84）"
    )
    await page.get_by_role("button", name="English").click()
    await expect(row.locator(".excluded-where")).to_have_text(
        f"lon {lon:.6f}, lat {lat:.6f} (WGS84)"
    )


async def test_on_a_phone_each_exclusion_reads_whole_within_the_screen(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """On a phone the list was a table whose first column, the incident's 32-character id on
    one line, was as wide as the screen: the time, team, outcome and reason of every row lay
    past its right edge. A row is now read whole within the screen, each cell after its
    column's name, in either language."""
    day = await seed(world)
    i2 = day.incidents[1]
    page = await (await phone_context(browser, contexts, QINGXI)).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await ask_report(page, i2["reported_at"][:10])
    width = page.viewport_size["width"] if page.viewport_size else 0
    late = page.locator(f'#exclusions tr[data-incident-id="{i2["id"]}"][data-tier="3"]')
    for language in ("zh", "en"):
        if language == "en":
            await page.get_by_role("button", name="English").click()
            await expect(late.locator("td").nth(5)).to_have_text("Breached")
        await late.scroll_into_view_if_needed()
        cells = late.locator("td")
        await expect(cells).to_have_count(7)
        for n in range(7):
            box = await cells.nth(n).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (
                language,
                n,
                box,
            )
        names = [
            await cells.nth(n).evaluate("(td) => getComputedStyle(td, '::before').content")
            for n in range(1, 7)
        ]
        assert names == [f'"{name}"' for name in COLUMNS[language]], names
