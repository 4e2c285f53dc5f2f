"""A notification held for the leader's phone to reconnect after a restart says so on the
console, live, and in the incident's record, in Chinese and English."""

from __future__ import annotations

from datetime import timedelta

from playwright.async_api import Browser, expect

from dispatch.notifiers import service as notifiers
from dispatch.schemas import show_time
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import card, open_console
from tests.pages.test_record_escalation import (
    closed_once_tier_one_breached,
    open_record,
    report_of_the_day,
)
from tests.support import World


async def test_a_notification_held_for_the_leaders_reconnection_says_it_waited(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post", name="三中驻点队")
    leader = await world.leader(team)  # no phone number on file: the SMS is not sent
    console = await open_console(browser, contexts, world)
    operator = await world.operator()
    incident = await world.report(operator)
    [dispatch] = incident["dispatches"]
    now = world.clock.now()
    held = (
        f"held until {show_time(now)}: the leader's phone was connected to a server process "
        f"that went away at {show_time(now - timedelta(seconds=30))}, and was given 10 s to "
        "reconnect once the server was back"
    )
    # The check as it runs once the leader's grace has ended, his alert still unacknowledged.
    async with world.runtime.transaction() as session:
        outcome = await notifiers.check_acknowledged(
            session,
            incident_id=incident["id"],
            user_id=leader.id,
            seq=0,
            dispatch_id=dispatch["id"],
            channels=[("sms", True)],
            now=now,
            held=held,
        )
    assert outcome.startswith("unacknowledged"), outcome

    line = card(console, incident["id"]).locator(".notification")
    await expect(line).to_have_text("短信未发送：未登记手机号（先等待队长手机重连 10 秒）")
    await console.locator("#lang").click()
    await expect(line).to_have_text(
        "SMS not sent: no phone number on file (after waiting 10 s for the leader's phone to "
        "reconnect)"
    )

    world.clock.advance(61)
    await closed_once_tier_one_breached(world, operator, (incident,))
    report = await report_of_the_day(browser, contexts, world, incident)
    record = await open_record(report, incident)
    said = record.locator('.record-events li[data-type="notify_failed"]')
    await expect(said).to_contain_text("短信未发送：未登记手机号（先等待队长手机重连 10 秒）")
