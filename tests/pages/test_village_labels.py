"""The console's card and the leader's phone say the incident's village before its coordinates:
the office and the teams know the town by its villages (村/社区)."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, Request, expect

from tests.pages.conftest import Opened, desk_context, log_in
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


async def shangyuan_around_qingxi(world: World) -> None:
    """上元村 imported: a square of about a kilometre around the demo town's centre."""
    reply = await import_villages(
        world, collection(feature("上元村", square(LON - 0.005, LAT - 0.005, 0.01)))
    )
    assert reply.status_code == 200, reply.text


async def test_the_console_and_the_phone_name_the_village_an_incident_is_in(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await shangyuan_around_qingxi(world)
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


def boundaries_asked(context: BrowserContext) -> list[str]:
    """The requests of the context's pages for the villages with their boundaries (megabytes
    for a city's villages), as they are made."""
    asked: list[str] = []

    def note(request: Request) -> None:
        if urlsplit(request.url).path.rstrip("/") == "/api/v1/villages":
            asked.append(request.url)

    context.on("request", note)
    return asked


async def test_the_history_and_the_report_name_villages_without_their_boundaries(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await shangyuan_around_qingxi(world)
    operator = await world.operator()
    inside = await world.report(operator, LON, LAT)
    outside = await world.report(operator, LON, LAT + 0.02)

    console = await open_console(browser, contexts, world)
    asked = boundaries_asked(console.context)
    await console.get_by_role("button", name="历史警情").click()
    history = console.locator("#history")
    await expect(history).to_have_attribute("data-state", "ready")
    # The incident names its village itself; one in no village is placed by its coordinates.
    near = history.locator(f'tr[data-incident-id="{inside["id"]}"]')
    await expect(near).to_contain_text("上元村")
    await expect(near).not_to_contain_text("经度")
    away_row = history.locator(f'tr[data-incident-id="{outside["id"]}"]')
    await expect(away_row).to_contain_text("经度 114.159000")
    await expect(away_row).not_to_contain_text("上元村")
    await console.get_by_role("button", name="English").click()
    await expect(near).to_contain_text("上元村")
    await expect(away_row).to_contain_text("lon 114.159000")
    await console.get_by_role("button", name="中文").click()

    report = await (await desk_context(browser, contexts)).new_page()
    asked_by_report = boundaries_asked(report.context)
    await log_in(report, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(report.locator("#app")).to_have_attribute("data-state", "ready")
    # The village filter offers the village, by its name.
    await expect(report.locator("#village option", has_text="上元村")).to_have_count(1)
    assert asked == [] and asked_by_report == []
