"""What the server is too busy to take is sent again by the pages: a report by the console
(as one incident), an acceptance by the phone."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import text

from dispatch.config import Settings
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import SCENE, away, open_console, open_phone
from tests.support import World


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # One connection for writes, waited for half a second: the test can keep it busy.
    return settings.model_copy(update={"db_pool_size": 1, "db_pool_timeout_s": 0.5})


async def test_a_report_refused_as_busy_goes_through_once_the_server_has_room(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.leader(await world.team("fixed_post", *SCENE))
    console = await open_console(browser, contexts, world)
    await console.locator("#lon").fill(f"{SCENE[0]:.7f}")
    await console.locator("#lat").fill(f"{SCENE[1]:.7f}")
    result = console.locator("#report-result")

    async with world.runtime.transaction() as session:
        await session.execute(text("SELECT 1"))  # the writers' only connection, held
        await console.get_by_role("button", name="派警").click()
        await expect(result.locator(".retrying")).to_contain_text("服务器繁忙")
        await expect(console.get_by_role("button", name="派警")).to_be_disabled()

    await expect(result).to_have_attribute("data-incident-id", re.compile(r".+"))
    await expect(result).to_contain_text("已派警：通知 1 支队伍")
    listed = await world.http.get("/api/v1/incidents", headers=(await world.operator()).headers)
    assert [i["id"] for i in listed.json()] == [await result.get_attribute("data-incident-id")]


async def test_an_acceptance_refused_as_busy_is_recorded_once_the_server_has_room(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader = await world.leader(await world.team("fixed_post", *SCENE))
    phone = await open_phone(browser, contexts, world, leader, away(300, at=SCENE))
    operator = await world.operator()
    incident = await world.report(operator, *SCENE)
    await expect(phone.locator("#alert")).to_be_visible()

    async with world.runtime.transaction() as session:
        await session.execute(text("SELECT 1"))  # the writers' only connection, held
        await phone.get_by_role("button", name="接警").click()
        await expect(phone.locator("#alert-position")).to_contain_text("服务器繁忙")

    await expect(phone.locator("#accept")).to_contain_text("已接警")
    stored = await world.incident(operator, incident["id"])
    assert stored["dispatches"][0]["accepted_at"] is not None
