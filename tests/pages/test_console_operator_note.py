"""加派 with a note: the operators' console shows what the leader was told (调度员附言 /
Operator's note) on the incident's card, under the team added by hand, so another operator
looking at the card reads it too: live as the dispatch comes over the board, after a reload, as
text (a note that looks like markup is shown as written), a long one wrapped within the card on
a narrow screen. The incident's record says it on the team's line as well."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Locator, Page, expect

from tests.incidents.test_added_dispatch import add, at
from tests.pages.conftest import Opened
from tests.pages.test_console_add_team import choose_team_to_add
from tests.pages.test_console_and_phone import card, open_console
from tests.pages.test_record_escalation import (
    closed_once_tier_one_breached,
    open_record,
    report_of_the_day,
)
from tests.support import World

NOTE = '<img src="x" onerror="window.injected = 1"><b>从北门进</b>\n报警人在二楼'


async def town(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fixed post covering the place and a patrol outside its zones, each with a leader."""
    post = await world.team("fixed_post", name="甲驻点队")
    patrol = await world.team("patrol", *at(3000, 90), radius_m=1000, name="三号巡逻车")
    for team in (post, patrol):
        await world.leader(team)
    return post, patrol


def dispatch_line(console: Page, incident: dict[str, Any], team: dict[str, Any]) -> Locator:
    return card(console, incident["id"]).locator(".dispatch", has_text=team["name"])


async def shown_as_text(page: Page, note: Locator) -> None:
    """The note's text as written: no element came of it, its line break kept."""
    text = note.locator(".operator-note-text")
    await expect(text).to_have_text(NOTE)
    assert await text.evaluate("el => el.textContent") == NOTE
    assert await text.evaluate("el => el.childElementCount") == 0
    await expect(note.locator("img, b")).to_have_count(0)
    assert await page.evaluate("window.injected === undefined")


async def test_the_card_shows_the_note_another_operator_gave_the_team_he_added(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post, patrol = await town(world)
    console = await open_console(browser, contexts, world)
    operator = await world.operator()
    incident = await world.report(operator)
    await expect(dispatch_line(console, incident, post)).to_be_visible()

    # Added elsewhere (another desk, the API): the board brings the dispatch, note and all.
    reply = await add(world, operator, incident["id"], patrol["id"], NOTE)
    assert reply.status_code == 201, reply.text
    added = dispatch_line(console, incident, patrol)
    await expect(added.locator(".ring-operator")).to_have_text("人工加派")
    note = added.locator(".operator-note")
    await expect(note.locator(".operator-note-label")).to_have_text("调度员附言：")
    await shown_as_text(console, note)
    # Under the team's line, the first thing below it.
    drawn = await added.evaluate("el => Array.from(el.children, (c) => c.className)")
    assert drawn.index("operator-note") == drawn.index("dispatch-head") + 1, drawn
    # A team the report dispatched has no note.
    await expect(dispatch_line(console, incident, post).locator(".operator-note")).to_have_count(0)

    await console.locator("#lang").click()
    await expect(note.locator(".operator-note-label")).to_have_text("Operator's note:")
    await expect(note).to_have_text("Operator's note: " + NOTE)
    await console.locator("#lang").click()
    await expect(note).to_have_text("调度员附言：" + NOTE)

    # Reloaded, the console reads the incident from the server, and the note with it.
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(note.locator(".operator-note-label")).to_have_text("调度员附言：")
    await shown_as_text(console, note)

    # The record says it on the team's line, as text too.
    world.clock.advance(61)
    await closed_once_tier_one_breached(world, operator, (incident,))
    report = await report_of_the_day(browser, contexts, world, incident)
    record = await open_record(report, incident)
    team_line = record.locator(f'.record-dispatch[data-team-id="{patrol["id"]}"]')
    written = team_line.locator(".operator-note")
    await expect(written).to_have_text("调度员附言：" + NOTE)
    await shown_as_text(report, written)
    post_line = record.locator(f'.record-dispatch[data-team-id="{post["id"]}"]')
    await expect(post_line).not_to_contain_text("调度员附言")
    await report.get_by_role("button", name="English").click()
    await expect(written).to_have_text("Operator's note: " + NOTE)


LINK = "https://uri.amap.com/marker?position=114.1612,22.849&name=" + "北门" * 20 + "x" * 200
LONG = "从北门进" * 40 + "\n" + LINK


async def spill(element: Locator) -> int:
    """How far the element's content runs out of it sideways, in CSS pixels."""
    wide: int = await element.evaluate("(el) => el.scrollWidth - el.clientWidth")
    return wide


async def test_a_long_note_added_on_the_console_wraps_within_the_card_on_a_narrow_screen(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _, patrol = await town(world)
    console = await open_console(browser, contexts, world)
    operator = await world.operator()
    incident = await world.report(operator)
    shown, dialog = await choose_team_to_add(console, incident["id"], patrol)
    await dialog.locator("#add-team-note").fill(LONG)
    await dialog.get_by_role("button", name="加派", exact=True).click()
    await expect(dialog).to_be_hidden()
    note = dispatch_line(console, incident, patrol).locator(".operator-note")
    await expect(note).to_have_text("调度员附言：" + LONG)

    for width in (800, 480):
        await console.set_viewport_size({"width": width, "height": 900})
        await expect(note).to_be_visible()
        # Wrapped, the link broken where it must be: nothing runs out of the note or the card.
        assert await spill(note) <= 0, width
        assert await spill(shown) <= 0, width
        note_box, card_box = await note.bounding_box(), await shown.bounding_box()
        assert note_box is not None and card_box is not None
        assert note_box["x"] + note_box["width"] <= card_box["x"] + card_box["width"] + 1, width
        assert note_box["height"] > 60, (width, note_box)

    # The record's team line wraps it as well.
    world.clock.advance(61)
    await closed_once_tier_one_breached(world, operator, (incident,))
    report = await report_of_the_day(browser, contexts, world, incident)
    record = await open_record(report, incident)
    written = record.locator(f'.record-dispatch[data-team-id="{patrol["id"]}"] .operator-note')
    await expect(written).to_have_text("调度员附言：" + LONG)
    await report.set_viewport_size({"width": 480, "height": 900})
    assert await spill(written) <= 0
    assert await report.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
