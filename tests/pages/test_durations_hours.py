"""A time of an hour or more reads hours, minutes and seconds (1 小时 16 分 00 秒 / 1 h 16 min
00 s), never minutes past sixty (76 分 00 秒) beside a late count of 1:15:00: on the console's
card, on the phone, in the incident's record, on the report page, in both languages."""

from __future__ import annotations

import re
from datetime import datetime

from playwright.async_api import Browser, expect

from dispatch.schemas import DISPLAY_TZ
from tests.pages.conftest import Opened, desk_context, log_in, phone_context
from tests.pages.test_console_and_phone import card
from tests.pages.test_console_operator import arrived_without_accepting
from tests.rosters.test_duty import advance_to
from tests.support import QINGXI, World

AN_HOUR_AND_16 = 76 * 60


def at_nine_in_the_morning(world: World) -> None:
    """Before any page opens: from 22:44 Beijing time of the real day, the arrival an hour and
    16 minutes on fell on the next day, read with its date (12-08 00:11:00) and outside the
    report page's day."""
    advance_to(world, 9)


async def test_an_arrival_over_an_hour_after_the_report_reads_in_hours_on_the_card_and_record(
    world: World, browser: Browser, contexts: Opened
) -> None:
    at_nine_in_the_morning(world)
    console, _, incident, row = await arrived_without_accepting(
        world, browser, contexts, AN_HOUR_AND_16
    )
    latency = row.locator('.hop-done[data-hop="arrived"] .hop-latency')
    await expect(latency).to_have_text("+1 小时 16 分 00 秒")
    tier = card(console, incident["id"]).locator('.tier[data-tier="1"]')
    await expect(tier).to_have_attribute("data-status", "breached")
    await expect(tier).to_contain_text(re.compile(r"超时，\S+（1 小时 16 分 00 秒）到场"))
    await expect(tier.locator(".tier-late")).to_have_text("迟到 1:15:00 到场")
    await console.get_by_role("button", name="English").click()
    await expect(latency).to_have_text("+1 h 16 min 00 s")
    await expect(tier).to_contain_text(re.compile(r"on scene \S+ \(1 h 16 min 00 s\)"))
    await console.get_by_role("button", name="中文").click()

    # The incident's record in 历史警情, on the day it was reported.
    day = datetime.fromisoformat(incident["reported_at"]).astimezone(DISPLAY_TZ).date()
    await console.get_by_role("button", name="历史警情").click()
    history = console.locator("#history")
    await expect(history).to_have_attribute("data-state", "ready")
    await console.locator("#history-day").fill(day.isoformat())
    await history.get_by_role("button", name="查询").click()
    listed = history.locator(f'tr[data-incident-id="{incident["id"]}"]')
    tier1 = listed.locator('td[data-tier="1"]')
    await expect(tier1).to_contain_text("超时 · 1 小时 16 分 00.0 秒")
    await listed.get_by_role("button").click()
    record = console.locator("#history-record")
    await expect(record).to_have_attribute("data-incident-id", incident["id"])
    in_record = record.locator('.record-tiers tr[data-tier="1"] td[data-field="elapsed"]')
    await expect(in_record).to_have_text("1 小时 16 分 00.0 秒")
    # Under an hour as before: the tier's target of a minute.
    await expect(record.locator('.record-tiers tr[data-tier="1"]')).to_contain_text("1 分 00.0 秒")
    await console.get_by_role("button", name="English").click()
    await expect(tier1).to_contain_text("Breached · 1 h 16 min 00.0 s")
    await expect(in_record).to_have_text("1 h 16 min 00.0 s")


async def test_the_report_page_gives_times_over_an_hour_in_hours(
    world: World, browser: Browser, contexts: Opened
) -> None:
    at_nine_in_the_morning(world)
    _, _, incident, _ = await arrived_without_accepting(world, browser, contexts, AN_HOUR_AND_16)
    auditor = await world.account("auditor")
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    tier1 = page.locator('.tier-card[data-tier="1"]')
    await expect(tier1).to_contain_text(
        "P50 1 小时 16 分 00.0 秒 · P90 1 小时 16 分 00.0 秒 · 最大 1 小时 16 分 00.0 秒"
    )
    await page.get_by_role("button", name="English").click()
    await expect(tier1).to_contain_text("1 h 16 min 00.0 s")
    await expect(tier1).not_to_contain_text("76 min")
    assert incident["id"]


async def test_the_phone_gives_a_tiers_time_over_an_hour_in_hours(
    world: World, browser: Browser, contexts: Opened
) -> None:
    at_nine_in_the_morning(world)
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    phone = await (await phone_context(browser, contexts, QINGXI)).new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    incident = await world.report(await world.operator())
    tier = phone.locator('#alert .tier[data-tier="1"]')
    await expect(tier).to_be_visible()
    world.clock.advance(AN_HOUR_AND_16)
    assert await world.arrive(incident, team, leader) == 200
    await expect(tier).to_have_attribute("data-status", "breached")
    await expect(tier).to_contain_text(re.compile(r"超时，\S+（1 小时 16 分 00 秒）到场"))
    await phone.get_by_role("button", name="English").last.click()
    await expect(phone.locator("html")).to_have_attribute("lang", "en")
    await expect(tier).to_contain_text(re.compile(r"on scene \S+ \(1 h 16 min 00 s\)"))
