"""A leader of tier 2 whose phone shows tier 1 late (红, 超时) could not tell from the three
tiers which was his team's: each tier looked alike. His own tier is now marked 本队 (your team),
on the alert and in the list, tier 1's breach beside it plainly another tier's."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import away, card_on_phone, open_phone
from tests.support import World


async def test_each_leader_sees_which_tier_is_his_teams_when_another_is_late(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    patrol = await world.team("patrol", radius_m=3000)
    leader = await world.leader(patrol)
    phone = await open_phone(browser, contexts, world, leader, away(800))
    operator = await world.operator()
    incident = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()

    world.clock.advance(61)
    await world.wait_for(operator, incident["id"], lambda i: i["chain"][0]["status"] == "breached")
    tiers = phone.locator("#alert-tiers .tier")
    await expect(tiers.nth(0)).to_have_attribute("data-status", "breached")
    await expect(phone.locator("#alert-tiers .tier-mine")).to_have_count(1)
    await expect(tiers.nth(1).locator(".tier-mine")).to_have_text("本队")
    listed = card_on_phone(phone, incident["id"]).locator(".tier")
    await expect(listed.nth(1).locator(".tier-mine")).to_have_text("本队")
    await expect(listed.nth(0).locator(".tier-mine")).to_have_count(0)

    await phone.locator("#alert").get_by_role("button", name="English").click()
    await expect(tiers.nth(1).locator(".tier-mine")).to_have_text("your team")
