"""The console's card and the leader's phone say the incident's village before its coordinates:
the office and the teams know the town by its villages (村/社区)."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import (
    away,
    card,
    open_console,
    open_phone,
    report_on_console,
)
from tests.support import QINGXI, World
from tests.villages.test_villages import collection, feature, import_villages, square

LON, LAT = QINGXI


async def test_the_console_and_the_phone_name_the_village_an_incident_is_in(
    world: World, browser: Browser, contexts: Opened
) -> None:
    reply = await import_villages(
        world, collection(feature("上元村", square(LON - 0.005, LAT - 0.005, 0.01)))
    )
    assert reply.status_code == 200, reply.text
    post = await world.team("fixed_post", name="上元驻点队")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    console = await open_console(browser, contexts, world)

    inside = await report_on_console(console, LON, LAT)
    await expect(card(console, inside).locator(".incident-head .meta")).to_contain_text(
        "上元村 · 经度 114.159000"
    )
    alert = phone.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("上元村 · ")

    # Outside every village: the coordinates alone, as before.
    outside = await world.report(await world.operator(), LON, LAT + 0.02)
    meta = card(console, outside["id"]).locator(".incident-head .meta")
    await expect(meta).to_contain_text("经度 114.159000")
    await expect(meta).not_to_contain_text("上元村")
