"""The console on a busy day, as an operator at a 1366x768 desk works it: the alarm banner
leaves the lists in the window, the late incidents are counted and shown alone on demand, the
report form is a few tabs from the header however many markers the map holds, a chip never
breaks inside its words, and a link pasted into a description stays in its card."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.pages.conftest import Opened, desk_context, log_in
from tests.pages.test_console_and_phone import SECOND, away, card
from tests.pages.test_phone_thumbs import LINK, report_with_a_link
from tests.support import Account, World

SMALL_DESK = {"width": 1366, "height": 768}


async def open_small_console(browser: Browser, contexts: Opened, world: World) -> Page:
    page = await (await desk_context(browser, contexts, SMALL_DESK)).new_page()
    await log_in(page, world.base_url + "/console", await world.operator())
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


async def record_arrival(world: World, by: Account, incident: dict[str, Any]) -> None:
    """The operator records the first dispatch's arrival, as reported by radio."""
    dispatch_id = incident["dispatches"][0]["id"]
    reply = await world.http.post(f"/api/v1/dispatches/{dispatch_id}/arrive", headers=by.headers)
    assert reply.status_code == 200, reply.text


async def test_the_alarm_banner_leaves_the_lists_in_the_window(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    await world.team("fixed_post")
    console = await open_small_console(browser, contexts, world)
    incident = await world.report(await world.operator())
    await expect(card(console, incident["id"])).to_be_visible()
    world.clock.advance(61)
    await expect(console.locator("#alarm")).to_be_visible(timeout=10 * SECOND)

    # The banner takes its height from the map and the panel, not from below the window: the
    # page does not scroll, and the ends of the incident list and the live events are in view.
    sizes = await console.evaluate(
        """() => ({
            page: document.scrollingElement.scrollHeight,
            window: window.innerHeight,
            panel: document.querySelector('.panel').getBoundingClientRect().bottom,
            map: document.querySelector('#map').getBoundingClientRect().bottom,
        })"""
    )
    assert sizes["page"] <= sizes["window"], sizes
    assert sizes["panel"] <= sizes["window"], sizes
    assert sizes["map"] <= sizes["window"], sizes
    await console.screenshot(path=artifacts / f"console-1366x768-alarm-{backend}.png")


async def test_late_incidents_are_counted_and_shown_alone_on_demand(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    console = await open_small_console(browser, contexts, world)
    late = await world.report(operator, category="fire")
    met_late = await world.report(operator, category="theft")
    world.clock.advance(61)
    await expect(card(console, late["id"])).to_have_class(re.compile("incident-breached"))
    # One whose team has come since, late: on record as breached, nothing left to do about it.
    await record_arrival(world, operator, met_late)
    await expect(card(console, met_late["id"]).locator('.tier[data-tier="1"]')).to_contain_text(
        "超时，"
    )
    running = await world.report(operator, category="dispute")
    await expect(card(console, running["id"])).to_be_visible()

    button = console.locator("#late-only")
    count = console.locator("#incident-count")
    await expect(button).to_have_text("超时未到场 1 起")
    await expect(button).to_have_attribute("aria-pressed", "false")
    await expect(count).to_have_text("（3）")

    await button.click()
    await expect(console.locator("article.incident")).to_have_count(1)
    await expect(card(console, late["id"])).to_be_visible()
    await expect(button).to_have_attribute("aria-pressed", "true")
    await expect(count).to_have_text("（1/3）")
    await console.screenshot(path=artifacts / f"console-late-only-{backend}.png")
    await console.get_by_role("button", name="English").click()
    await expect(button).to_have_text("Late, nobody on scene: 1")
    await console.get_by_role("button", name="中文").click()

    # Pressed again, every open incident; pressed and then nobody late: every one, by itself.
    await button.click()
    await expect(console.locator("article.incident")).to_have_count(3)
    await button.click()
    await expect(console.locator("article.incident")).to_have_count(1)
    await record_arrival(world, operator, late)
    await expect(console.locator("article.incident")).to_have_count(3)
    await expect(button).to_be_hidden()
    await expect(count).to_have_text("（3）")


async def test_the_report_form_is_a_few_tabs_from_the_header_however_many_markers(
    world: World, browser: Browser, contexts: Opened
) -> None:
    for n in range(8):
        await world.team("fixed_post", *away(150 * n, 45 * n))
    operator = await world.operator()
    console = await open_small_console(browser, contexts, world)
    for n in range(4):
        incident = await world.report(operator, *away(150 * n, 45 * n))
        await expect(card(console, incident["id"])).to_be_visible()
    # Twelve markers with tooltips on the map: none is a tab stop on the way to the form.
    await expect(console.locator("#map path.leaflet-interactive")).to_have_count(12)

    await console.locator("#logout").focus()
    stops = []
    for _ in range(6):
        await console.keyboard.press("Tab")
        stops.append(
            await console.evaluate("document.activeElement.id || document.activeElement.className")
        )
        if stops[-1] == "category":
            break
    assert stops[-1] == "category", stops
    # A marker's tooltip still shows when pointed at.
    await console.locator("#map path.leaflet-interactive").last.hover()
    await expect(console.locator("#map .leaflet-tooltip")).to_be_visible()


async def test_a_chip_beside_a_team_never_breaks_inside_its_words(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    # Outside the post's 100 m, inside the 1,000 m ring alerted when nobody accepts in time.
    far = await world.team(
        "fixed_post", *away(600), name="清溪镇银湖工业区东门外侧临时驻点应急联防队"
    )
    console = await open_small_console(browser, contexts, world)
    incident = await world.report(await world.operator())
    world.clock.advance(21)
    row = card(console, incident["id"]).locator(f'.dispatch:has-text("{far["name"]}")')
    chip = row.locator(".ring")
    await expect(chip).to_have_text("扩大范围")

    # At no width of the line does the chip end one line and start the next: it goes whole.
    broken = await chip.evaluate(
        """(chip) => {
            const head = chip.parentElement;
            const widths = [];
            for (let width = 80; width <= 420; width += 1) {
                head.style.width = width + 'px';
                if (chip.getClientRects().length > 1) widths.push(width);
            }
            head.style.width = '';
            return widths;
        }"""
    )
    assert broken == []


async def test_a_link_pasted_into_the_description_stays_in_its_card(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    console = await open_small_console(browser, contexts, world)
    incident = card(console, await report_with_a_link(world, await world.operator()))
    line = incident.locator("p", has_text=LINK[:20])
    await expect(line).to_contain_text(LINK)
    box = await incident.bounding_box()
    right = await line.evaluate(
        "(el) => { const r = document.createRange(); r.selectNodeContents(el);"
        " return r.getBoundingClientRect().right; }"
    )
    assert box is not None and right <= box["x"] + box["width"], (right, box)


async def test_the_login_form_keeps_its_width_in_the_windows_column(
    world: World, browser: Browser, contexts: Opened
) -> None:
    page = await (await desk_context(browser, contexts, SMALL_DESK)).new_page()
    await page.goto(world.base_url + "/console")
    form = page.locator("#login")
    await expect(form).to_be_visible()
    # 24rem, not shrunk to its labels in the column the window is laid out as.
    box = await form.bounding_box()
    assert box is not None and box["width"] == 24 * 16, box
