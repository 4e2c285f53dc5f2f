"""A tier's target as the console and the phone say it: the targets are set in seconds
(DISPATCH_CHAIN_TARGETS), and one not a whole number of minutes read as a fraction of one
(0.75分钟到场 for 45 s, 1.5分钟到场 for 90 s)."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import away, card, open_console, open_phone
from tests.support import World


async def test_a_target_of_seconds_reads_in_minutes_and_seconds_on_both_pages(
    world: World, browser: Browser, contexts: Opened
) -> None:
    world.runtime.settings.chain_targets = (45.0, 90.0, 300.0)
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    console = await open_console(browser, contexts, world)
    incident = await world.report(await world.operator())

    on_console = card(console, incident["id"]).locator(".tier-target")
    on_phone = phone.locator("#alert-tiers .tier-target")
    await expect(phone.locator("#alert")).to_be_visible()
    targets = ["45 秒到场", "1 分 30 秒到场", "5分钟到场"]
    await expect(on_console).to_have_text(targets)
    await expect(on_phone).to_have_text(targets)

    await console.get_by_role("button", name="English").click()
    await phone.locator("#alert").get_by_role("button", name="English").click()
    targets = ["on scene in 45 s", "on scene in 1 min 30 s", "on scene in 5 min"]
    await expect(on_console).to_have_text(targets)
    await expect(on_phone).to_have_text(targets)
