"""A late tier on the console says how long it has been late, as well as when it breached: the
figure runs on the server's clock without the card being drawn again, is no live region (a
screen reader is not told it every second), and stops at the team's arrival."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import SECOND, card
from tests.pages.test_console_busy_hour import console_in, shanghai
from tests.support import World

LIVE = "[aria-live], [role=timer], [role=status], [role=log], [role=alert], [role=marquee]"


async def test_a_late_tier_counts_how_long_it_is_late_until_its_team_arrives(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    # The device in New York: the figure is elapsed time on the server's clock, not a wall time.
    console, watched = await console_in(browser, contexts, world, operator, "America/New_York")
    incident = await world.report(operator)
    tier = card(console, incident["id"]).locator('.tier[data-tier="1"]')
    await expect(tier.locator(".tier-clock")).to_be_visible()

    # 45 s past tier 1's one minute.
    world.clock.advance(105)
    await console.context.clock.set_system_time(world.clock.now())
    await expect(tier).to_have_attribute("data-status", "breached", timeout=10 * SECOND)
    stored = await world.incident(operator, incident["id"])
    at = shanghai(stored["chain"][0]["breached_at"])
    # The breach's time is kept, and the figure beside it runs (a few seconds of the test's own).
    await expect(tier.locator(".tier-state")).to_have_text(f"超时 {at}")
    late = tier.locator(".tier-late")
    await expect(late).to_have_text(re.compile(r"^已超时 0:(4[5-9]|5\d)$"))
    assert await late.evaluate(f"(el) => el.closest({LIVE!r}) === null"), "in a live region"
    await late.evaluate("(el) => { el.dataset.seen = 'yes'; }")

    # A minute on: the same element, its text changed in place (the list is not drawn again).
    world.clock.advance(60)
    await console.context.clock.set_system_time(world.clock.now())
    await expect(late).to_have_text(re.compile(r"^已超时 1:(4[5-9]|5\d)$"), timeout=10 * SECOND)
    assert await late.get_attribute("data-seen") == "yes", "the card was drawn again"
    await expect(tier.locator(".tier-state")).to_have_text(f"超时 {at}")

    await console.get_by_role("button", name="English").click()
    await expect(late).to_have_text(re.compile(r"^late 1:(4[5-9]|5\d)$"))
    await console.get_by_role("button", name="中文").click()

    # On scene 1:45 after the deadline (the server's times): the figure stops there.
    assert await world.arrive(incident, team, leader) == 200
    await expect(tier.locator(".tier-late")).to_have_text("迟到 1:45 到场", timeout=10 * SECOND)
    await expect(tier.locator(".tier-late[data-late-from]")).to_have_count(0)
    world.clock.advance(30)
    await console.context.clock.set_system_time(world.clock.now())
    await console.get_by_role("button", name="English").click()
    await expect(tier.locator(".tier-late")).to_have_text("arrived 1:45 late")
    await expect(tier.locator(".tier-state")).to_contain_text("breached, on scene")
    assert watched.errors == []
