"""加派 with a note: the leader's phone shows the operator's note (调度员附言 / Operator's note)
under 人工加派 — which gate, which floor, what he needs on the way — on the alert and after a
reload, as text: a note that looks like markup is shown as written, never made into elements.
A 加派 without a note shows nothing more."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.incidents.test_added_dispatch import add, at
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import card_on_phone, open_phone
from tests.support import World


async def patrol_added_by_hand(
    world: World, browser: Browser, contexts: Opened, note: str | None
) -> tuple[Page, dict[str, Any]]:
    """A patrol outside the incident's zones added by hand with ``note``, its leader's phone
    open on the alert."""
    await world.team("fixed_post")
    patrol = await world.team("patrol", *at(3000, 90), radius_m=1000)
    leader = await world.leader(patrol)
    operator = await world.operator()
    phone = await open_phone(browser, contexts, world, leader, at(2900, 90))
    incident = await world.report(operator)
    reply = await add(world, operator, incident["id"], patrol["id"], note)
    assert reply.status_code == 201, reply.text
    await expect(phone.locator("#alert")).to_be_visible()
    return phone, incident


NOTE = '<img src="x" onerror="window.injected = 1"><b>从北门进</b>\n报警人在二楼'


async def test_the_leader_reads_the_operators_note_under_added_by_hand_as_text(
    world: World, browser: Browser, contexts: Opened
) -> None:
    phone, incident = await patrol_added_by_hand(world, browser, contexts, NOTE)
    info = phone.locator("#alert-info")
    added = info.locator('.ring-note[data-added-by="operator"]')
    await expect(added).to_contain_text("人工加派")
    note = info.locator(".operator-note")
    await expect(note.locator(".operator-note-label")).to_have_text("调度员附言")
    text = note.locator(".operator-note-text")
    await expect(text).to_have_text(NOTE)
    # Under 人工加派, the next thing the leader reads.
    # (Read in one go: the alert is drawn again as its news comes.)
    drawn = await info.evaluate("el => Array.from(el.children, (c) => c.className)")
    assert drawn.index("operator-note") == drawn.index("ring-note") + 1, drawn
    # Text, not markup: no element came of it, its line break kept as written.
    await expect(info.locator("img, b")).to_have_count(0)
    assert await text.evaluate("el => el.textContent") == NOTE
    assert await text.evaluate("el => el.childElementCount") == 0
    assert await phone.evaluate("window.injected === undefined")

    await phone.locator("#alert").get_by_role("button", name="English").click()
    await expect(note.locator(".operator-note-label")).to_have_text("Operator's note")
    await expect(text).to_have_text(NOTE)
    await phone.locator("#alert").get_by_role("button", name="中文").click()
    await expect(note.locator(".operator-note-label")).to_have_text("调度员附言")

    # Reloaded, the page reads the incident from the server, and the note with it.
    await phone.reload()
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    await card_on_phone(phone, incident["id"]).get_by_role("button").click()
    await expect(phone.locator("#alert")).to_be_visible()
    await expect(info.locator(".operator-note .operator-note-label")).to_have_text("调度员附言")
    await expect(info.locator(".operator-note .operator-note-text")).to_have_text(NOTE)
    await expect(info.locator("img, b")).to_have_count(0)
    assert await phone.evaluate("window.injected === undefined")


async def test_a_team_added_without_a_note_shows_nothing_more(
    world: World, browser: Browser, contexts: Opened
) -> None:
    phone, _ = await patrol_added_by_hand(world, browser, contexts, None)
    info = phone.locator("#alert-info")
    await expect(info.locator('.ring-note[data-added-by="operator"]')).to_contain_text("人工加派")
    await expect(info.locator(".operator-note")).to_have_count(0)
    await expect(info).not_to_contain_text("调度员附言")
