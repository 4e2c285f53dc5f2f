"""A notification held for the leader's phone to reconnect after a restart says so on the
console, live, and in the incident's record, in Chinese and English."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from playwright.async_api import Browser, expect

from dispatch.notifiers import service as notifiers
from dispatch.schemas import DISPLAY_TZ, show_time
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import card, open_console
from tests.pages.test_record_escalation import (
    closed_once_tier_one_breached,
    open_record,
    report_of_the_day,
)
from tests.support import Account, World


async def check_held(
    world: World,
    incident: dict[str, Any],
    leader: Account,
    held: str,
    held_until: datetime | None,
) -> None:
    """The check as it runs once the leader's grace has ended, his alert still unacknowledged."""
    [dispatch] = incident["dispatches"]
    async with world.runtime.transaction() as session:
        outcome = await notifiers.check_acknowledged(
            session,
            incident_id=incident["id"],
            user_id=leader.id,
            seq=0,
            dispatch_id=dispatch["id"],
            channels=[("sms", True)],
            now=world.clock.now(),
            held=held,
            held_until=held_until,
        )
    assert outcome.startswith("unacknowledged"), outcome


async def test_a_notification_held_for_the_leaders_reconnection_says_until_when(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Until when it waited is read from ``held_until`` and shown in Beijing time, not from
    the English of ``held``; one held with no time known (held before the server recorded
    it) says it waited, and no time."""
    team = await world.team("fixed_post", name="三中驻点队")
    # No phone numbers on file: the SMS is not sent.
    leader, other = await world.leader(team), await world.leader(team)
    console = await open_console(browser, contexts, world)
    operator = await world.operator()
    incident = await world.report(operator)
    now = world.clock.now()
    # The grace ended 7.4 s ago, and the check is only now run (the timer was late): the time
    # shown is the field's, not the check's, and not the sentence's 10 s.
    until = now - timedelta(seconds=7.4)
    held = (
        f"held until {show_time(until)}: the leader's phone was connected to a server process "
        f"that went away at {show_time(until - timedelta(seconds=40))}, and was given 10 s to "
        "reconnect once the server was back"
    )
    wall = until.astimezone(DISPLAY_TZ).strftime("%H:%M:%S")
    await check_held(world, incident, leader, held, until)
    lines = card(console, incident["id"]).locator(".notification")
    await expect(lines).to_have_text([f"短信未发送：未登记手机号（先等待队长手机重连至 {wall}）"])
    await check_held(world, incident, other, held, None)
    await expect(lines).to_have_text(
        [
            f"短信未发送：未登记手机号（先等待队长手机重连至 {wall}）",
            "短信未发送：未登记手机号（先等待队长手机重连）",
        ]
    )
    await console.locator("#lang").click()
    await expect(lines).to_have_text(
        [
            f"SMS not sent: no phone number on file (after waiting until {wall} for the "
            "leader's phone to reconnect)",
            "SMS not sent: no phone number on file (after waiting for the leader's phone to "
            "reconnect)",
        ]
    )

    world.clock.advance(61)
    await closed_once_tier_one_breached(world, operator, (incident,))
    report = await report_of_the_day(browser, contexts, world, incident)
    record = await open_record(report, incident)
    said = record.locator('.record-events li[data-type="notify_failed"]')
    await expect(said).to_have_count(2)
    await expect(said.nth(0)).to_contain_text(
        re.compile(rf"短信未发送：未登记手机号（先等待队长手机重连至 (\S+ )?{wall}）")
    )
    await expect(said.nth(1)).to_contain_text("短信未发送：未登记手机号（先等待队长手机重连）")
