"""What came while the console's line was down is listed, once back, at the time it happened on
the server, not at the time the replay brought it: the operator reading the feed after an
outage saw the wider ring drawn after the tier it was drawn for had breached, and a report made
a minute before listed as if it had just come in."""

from __future__ import annotations

from datetime import datetime, timedelta

from playwright.async_api import Browser, expect

from dispatch.schemas import DISPLAY_TZ
from tests.incidents.test_escalation import at, escalation_outcome
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import open_console
from tests.support import World


def clock(iso: str, seconds: float = 0) -> str:
    """The feed's time (Beijing, to the second) ``seconds`` after ``iso``."""
    moment = datetime.fromisoformat(iso) + timedelta(seconds=seconds)
    return moment.astimezone(DISPLAY_TZ).strftime("%H:%M:%S")


async def test_what_was_replayed_after_an_outage_is_listed_at_its_own_time(
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
    world.clock.advance(45)
    await world.wait_for(operator, incident["id"], lambda i: i["chain"][0]["status"] == "breached")
    # A colleague reports a fire far off meanwhile.
    fire = await world.report(await world.operator(), *at(5000, 0), category="fire")
    world.clock.advance(10)
    await console.context.set_offline(False)
    await console.context.clock.set_system_time(world.clock.now())
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")

    feed = console.locator("#feed li")
    for words, when in (
        ("扩大范围（1000 米）：打架斗殴", clock(incident["reported_at"], 20)),
        ("超时：一梯队 应急联防队，打架斗殴", clock(incident["reported_at"], 60)),
        ("新警情：火情", clock(fire["reported_at"])),
    ):
        line = feed.filter(has_text=words)
        await expect(line).to_have_count(1)
        await expect(line.locator("time")).to_have_text(when)
