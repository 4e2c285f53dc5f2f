"""The late team's leader on his way (accepted, not there) when the operator closes the incident,
its alert on his screen: the screen says it is closed, and no longer that his position is being
sent (nothing is), nor counts down the tiers the close cancelled, which went on to read late."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import away, open_phone
from tests.support import World


async def test_a_late_teams_alert_closed_on_screen_shows_the_chain_as_closed(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(800))
    operator = await world.operator()
    incident = await world.report(operator)
    alert = phone.locator("#alert")
    await expect(alert).to_be_visible()
    await alert.get_by_role("button", name="接警").click()
    position = phone.locator("#alert-position")
    await expect(position).to_contain_text("正在上报位置")

    # Tier 1 goes late with the team on its way; the operator closes before tier 2's deadline.
    world.clock.advance(61)
    await world.wait_for(operator, incident["id"], lambda i: i["chain"][0]["status"] == "breached")
    tiers = phone.locator("#alert-tiers .tier")
    await expect(tiers.nth(0)).to_have_attribute("data-status", "breached")
    closed = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert closed.status_code == 200, closed.text

    await expect(phone.locator("#alert-title")).to_have_text("警情已结案")
    await expect(position).to_have_text("")
    await expect(phone.locator("#alert-tiers .tier-clock")).to_have_count(0)
    await expect(tiers).to_have_count(3)
    for n, status in enumerate(["breached", "cancelled", "cancelled"]):
        await expect(tiers.nth(n)).to_have_attribute("data-status", status)
    await expect(tiers.nth(1)).to_contain_text("已取消")
