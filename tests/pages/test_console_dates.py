"""Times on the console and the phone carry their date when they are not of today
(Asia/Shanghai)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, expect

from dispatch.clock import ManualClock
from tests.pages.conftest import PHONE, TIMEOUT_MS, Opened, log_in
from tests.pages.test_console_and_phone import away, card, card_on_phone, open_console
from tests.support import World

SHANGHAI = timedelta(hours=8)
# The coming midnight in Shanghai, and 90 s before it.
MIDNIGHT = (datetime.now(UTC) + SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
MIDNIGHT += timedelta(days=1)
BEFORE = MIDNIGHT - timedelta(seconds=90)  # Shanghai wall clock 23:58:30


START = (BEFORE - SHANGHAI).replace(tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


async def test_an_incident_of_yesterday_shows_its_date_and_one_of_today_does_not(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    late = await world.report(operator, category="fight")
    yesterday = BEFORE.strftime("%m-%d")
    assert late["reported_at"].startswith(BEFORE.strftime("%Y-%m-%dT23:58:30"))
    world.clock.advance(180)  # 00:01:30 the next day; the tier-1 clock breached at 23:59:30
    early = await world.report(operator, category="fire")

    console = await open_console(browser, contexts, world)
    await expect(card(console, late["id"]).locator(".incident-head .meta")).to_contain_text(
        f"{yesterday} 23:58:30 接报"
    )
    await expect(card(console, late["id"]).locator('.tier[data-tier="1"]')).to_contain_text(
        f"超时 {yesterday} 23:59:30"
    )
    head = card(console, early["id"]).locator(".incident-head .meta")
    await expect(head).to_contain_text("00:01:30 接报")
    await expect(head).not_to_contain_text(MIDNIGHT.strftime("%m-%d"))


async def test_the_phone_dates_a_tier_of_yesterday_once_midnight_passes(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A tier breached at 23:59:30 reads 超时 23:59:30 in the leader's list. Once Shanghai's
    midnight passes (the phone set to New York's time), it reads with its date, as the row's
    report time does, though nothing new has come of the incident."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    lon, lat = away(300)
    context = await browser.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        timezone_id="America/New_York",
        geolocation={"longitude": lon, "latitude": lat, "accuracy": 10},
        permissions=["geolocation"],
    )
    context.set_default_timeout(TIMEOUT_MS)
    contexts.watch(context)
    await context.clock.install(time=START)
    phone = await context.new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    incident = await world.report(operator, category="fight")
    await expect(phone.locator("#alert")).to_be_visible()
    await phone.get_by_role("button", name="收起").click()

    world.clock.advance(61)
    await context.clock.set_system_time(START + timedelta(seconds=61))
    row = card_on_phone(phone, incident["id"])
    tier = row.locator('.tier[data-tier="1"]')
    await expect(tier).to_have_attribute("data-status", "breached")
    await expect(tier).to_contain_text("超时 23:59:30")

    world.clock.advance(70)  # 00:00:41 the next day
    await context.clock.set_system_time(START + timedelta(seconds=131))
    yesterday = BEFORE.strftime("%m-%d")
    await expect(tier).to_contain_text(f"超时 {yesterday} 23:59:30")
    await expect(row.locator(".meta-reported")).to_contain_text(f"{yesterday} 23:58:30")
