"""An incident's coordinates read as the report form takes them: longitude first, each named,
on the console's card and on the leader's alert, in both languages."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import SCENE, away, card, open_console, open_phone
from tests.support import World


async def test_the_card_and_the_alert_name_longitude_and_latitude_in_the_forms_order(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post", *SCENE)
    leader = await world.leader(team)
    phone = await open_phone(browser, contexts, world, leader, away(300, at=SCENE))
    console = await open_console(browser, contexts, world)
    incident = await world.report(await world.operator(), *SCENE)

    meta = card(console, incident["id"]).locator(".incident-head .meta")
    await expect(meta).to_contain_text("经度 114.161200，纬度 22.849000（WGS84）")
    alert = phone.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("坐标（WGS84）：经度 114.161200，纬度 22.849000")

    await console.get_by_role("button", name="English").click()
    await expect(meta).to_contain_text("lon 114.161200, lat 22.849000 (WGS84)")
    await phone.get_by_role("button", name="收起").click()
    await phone.get_by_role("button", name="English").click()
    await phone.get_by_role("button", name="Open").click()
    await expect(alert).to_contain_text("Coordinates (WGS84): lon 114.161200, lat 22.849000")
