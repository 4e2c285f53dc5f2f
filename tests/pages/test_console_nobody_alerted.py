"""A team dispatched with no enabled leader account: its alert reached nobody, and the console
says so at once, in the live events and on the incident's card (in red, under the team), in
the operator's language; a reload still shows it, and the incident's record says it in 处置经过
and on the team's line."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import away, card, open_console
from tests.pages.test_record_escalation import (
    closed_once_tier_one_breached,
    open_record,
    report_of_the_day,
)
from tests.support import World


async def test_the_card_warns_of_a_team_whose_alert_reached_nobody(
    world: World, browser: Browser, contexts: Opened
) -> None:
    staffed = await world.team("fixed_post", name="甲驻点队")
    await world.leader(staffed)
    # Its only leader disabled: nobody gets its alert.
    alone = await world.team("fixed_post", *away(50, 90), name="乙驻点队")
    gone = await world.leader(alone)
    reply = await world.http.patch(
        f"/api/v1/users/{gone.id}", json={"disabled": True}, headers=(await world.admin()).headers
    )
    assert reply.is_success, reply.text
    console = await open_console(browser, contexts, world)
    operator = await world.operator()
    incident = await world.report(operator)

    shown = card(console, incident["id"])
    warned = shown.locator(".dispatch", has_text="乙驻点队").locator(".nobody-alerted")
    await expect(warned).to_have_text(
        "无人接收警报：该队无可用队长账号，请用电台联系或加派其他队伍"
    )
    await expect(
        shown.locator(".dispatch", has_text="甲驻点队").locator(".nobody-alerted")
    ).to_have_count(0)
    feed = console.locator("#feed")
    await expect(feed).to_contain_text(
        "无人接收警报：乙驻点队（一梯队）无可用队长账号，请用电台联系或加派其他队伍"
    )
    await expect(feed.locator("li.feed-breach", has_text="乙驻点队")).to_have_count(1)

    await console.locator("#lang").click()
    await expect(warned).to_have_text(
        "Nobody received the alert: the team has no active leader account; radio it or add "
        "another team"
    )
    await expect(feed).to_contain_text("Nobody received the alert: 乙驻点队 (Tier 1)")
    await console.locator("#lang").click()

    # Reloaded, the console reads the incident again: the card still says it.
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(warned).to_have_text(
        "无人接收警报：该队无可用队长账号，请用电台联系或加派其他队伍"
    )

    world.clock.advance(61)
    await closed_once_tier_one_breached(world, operator, (incident,))
    report = await report_of_the_day(browser, contexts, world, incident)
    record = await open_record(report, incident)
    said = record.locator('.record-events li[data-type="nobody_alerted"]')
    await expect(said).to_have_count(1)
    await expect(said).to_contain_text("乙驻点队（一梯队）无人接收警报：该队无可用队长账号")
    team_line = record.locator(f'.record-dispatch[data-team-id="{alone["id"]}"]')
    await expect(team_line).to_contain_text("无人接收警报")
    staffed_line = record.locator(f'.record-dispatch[data-team-id="{staffed["id"]}"]')
    await expect(staffed_line).not_to_contain_text("无人接收警报")
