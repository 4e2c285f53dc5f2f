"""An escalation that came while the console's line was down is listed, once back, at the time
it happened on the server, not at the time the replay brought it: the operator reading the feed
after an outage saw the wider ring drawn after the tier it was drawn for had breached."""

from __future__ import annotations

from datetime import datetime, timedelta

from playwright.async_api import Browser, expect

from dispatch.schemas import DISPLAY_TZ
from tests.incidents.test_escalation import escalation_outcome
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import open_console
from tests.support import World


async def test_an_escalation_replayed_after_an_outage_is_listed_at_its_own_time(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    incident = await world.report(operator, category="fight")
    await expect(console.locator("article.incident")).to_have_count(1)

    await console.context.set_offline(True)
    await expect(console.locator("#conn")).to_have_attribute("data-state", "offline")
    world.clock.advance(21)
    await escalation_outcome(world, incident["id"])
    world.clock.advance(30)
    await console.context.set_offline(False)
    await console.context.clock.set_system_time(world.clock.now())
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")

    escalated = datetime.fromisoformat(incident["reported_at"]) + timedelta(seconds=20)
    line = console.locator("#feed li", has_text="扩大范围（1000 米）")
    await expect(line).to_have_count(1)
    await expect(line.locator("time")).to_have_text(
        escalated.astimezone(DISPLAY_TZ).strftime("%H:%M:%S")
    )
