"""Times on the console carry their date when they are not of today (Asia/Shanghai)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, expect

from dispatch.clock import ManualClock
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import card, open_console
from tests.support import World

SHANGHAI = timedelta(hours=8)
# The coming midnight in Shanghai, and 90 s before it.
MIDNIGHT = (datetime.now(UTC) + SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
MIDNIGHT += timedelta(days=1)
BEFORE = MIDNIGHT - timedelta(seconds=90)  # Shanghai wall clock 23:58:30


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock((BEFORE - SHANGHAI).replace(tzinfo=UTC))


async def test_an_incident_of_yesterday_shows_its_date_and_one_of_today_does_not(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    late = await world.report(operator, category="fight")
    yesterday = BEFORE.strftime("%m-%d")
    assert late["reported_at"].startswith(BEFORE.strftime("%Y-%m-%dT23:58:30"))
    world.clock.advance(180)  # 00:01:30 the next day; the tier-1 clock breached at 23:59:30
    early = await world.report(operator, category="fire")

    console = await open_console(browser, contexts, world)
    await expect(card(console, late["id"]).locator(".incident-head .meta")).to_contain_text(
        f"{yesterday} 23:58:30 接报"
    )
    await expect(card(console, late["id"]).locator('.tier[data-tier="1"]')).to_contain_text(
        f"超时 {yesterday} 23:59:30"
    )
    head = card(console, early["id"]).locator(".incident-head .meta")
    await expect(head).to_contain_text("00:01:30 接报")
    await expect(head).not_to_contain_text(MIDNIGHT.strftime("%m-%d"))
