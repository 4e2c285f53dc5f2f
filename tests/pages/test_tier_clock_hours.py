"""A tier's clock and its late count from an hour on read hours, minutes and seconds (1:15:00),
never minutes past sixty (75:00): on the console and on the phone, which share the tiers'
display, in both languages."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from dispatch.config import Settings
from tests.pages.conftest import Opened, log_in, phone_context
from tests.pages.test_console_and_phone import SECOND, card
from tests.pages.test_console_busy_hour import console_in
from tests.support import QINGXI, World


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Tier 3 due an hour and a half after the report: a clock that starts above an hour.
    return settings.model_copy(update={"chain_targets": (60.0, 180.0, 5400.0)})


async def on_the_servers_time(world: World, *pages: Page) -> None:
    for page in pages:
        await page.context.clock.set_system_time(world.clock.now())


async def test_a_tier_late_over_an_hour_counts_in_hours_until_its_team_arrives(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    incident = await world.report(operator)
    tier = card(console, incident["id"]).locator('.tier[data-tier="1"]')
    await expect(tier.locator(".tier-clock")).to_have_text("1:00")

    # An hour and a quarter past tier 1's one minute.
    world.clock.advance(60 + 75 * 60)
    await on_the_servers_time(world, console)
    await expect(tier).to_have_attribute("data-status", "breached", timeout=10 * SECOND)
    late = tier.locator(".tier-late")
    await expect(late).to_have_text(re.compile(r"^已超时 1:15:[0-5]\d$"), timeout=10 * SECOND)
    await console.get_by_role("button", name="English").click()
    await expect(late).to_have_text(re.compile(r"^late 1:15:[0-5]\d$"))
    await console.get_by_role("button", name="中文").click()

    # On scene 1:15:00 after the deadline (the server's times): the figure stops there.
    assert await world.arrive(incident, team, leader) == 200
    await expect(tier.locator(".tier-late")).to_have_text("迟到 1:15:00 到场", timeout=10 * SECOND)
    await console.get_by_role("button", name="English").click()
    await expect(tier.locator(".tier-late")).to_have_text("arrived 1:15:00 late")
    assert watched.errors == []


async def test_a_clock_over_an_hour_counts_down_in_hours_on_the_console_and_the_phone(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader = await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    phone = await (await phone_context(browser, contexts, QINGXI)).new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    incident = await world.report(operator)
    clocks = [
        card(console, incident["id"]).locator('.tier[data-tier="3"] .tier-clock'),
        phone.locator('#alert .tier[data-tier="3"] .tier-clock'),
    ]
    # The page's clock runs on while the test's server clock stands: 1:30:00, or a few
    # seconds under it (never 90:00).
    for clock in clocks:
        await expect(clock).to_have_text(re.compile(r"^1:(30:00|29:[0-5]\d)$"))

    # Half an hour on: under an hour left, minutes and seconds again (59:5x, never 0:59:5x).
    world.clock.advance(30 * 60 + 1)
    await on_the_servers_time(world, console, phone)
    for clock in clocks:
        await expect(clock).to_have_text(re.compile(r"^59:[0-5]\d$"), timeout=10 * SECOND)
    await phone.get_by_role("button", name="English").last.click()
    await expect(phone.locator("html")).to_have_attribute("lang", "en")
    await expect(clocks[1]).to_have_text(re.compile(r"^59:[0-5]\d$"))
    assert watched.errors == []
