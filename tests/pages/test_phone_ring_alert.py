"""A leader whose team the escalation added (no tier-1 team accepted in time, the place outside
his team's zone) was alerted like any other, with nothing to say that his team was sent for
later, as reinforcement, with less of tier 1's minute left: the alert now says when it was
added."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.incidents.test_escalation import at, escalation_outcome
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import open_phone
from tests.support import World


async def test_an_alert_the_escalation_sent_says_the_team_was_added_after_the_report(
    world: World, browser: Browser, contexts: Opened
) -> None:
    covering = await world.team("fixed_post")
    covering_leader = await world.leader(covering)
    # 800 m east: its 500 m zone does not cover the place, the escalation's 1000 m ring does.
    ring_team = await world.team("mobile", *at(800, 90))
    ring_leader = await world.leader(ring_team)
    first = await open_phone(browser, contexts, world, covering_leader, at(300, 0))
    added = await open_phone(browser, contexts, world, ring_leader, at(800, 90))
    incident = await world.report(await world.operator())
    await expect(first.locator("#alert")).to_be_visible()
    await expect(first.locator("#alert-info .ring-note")).to_have_count(0)

    # The step is due at 20 s; the server's clock moves straight to 21 s, when it alerts.
    world.clock.advance(21)
    await escalation_outcome(world, incident["id"])
    note = added.locator("#alert-info .ring-note")
    await expect(added.locator("#alert")).to_be_visible()
    await expect(note).to_have_text("扩大范围加派：报警 21 秒后加派本队")
    await added.locator("#alert").get_by_role("button", name="English").click()
    await expect(note).to_have_text("Wider ring: your team was added 21 s after the report")
