"""历史警情 a page at a time: a day with more incidents than one page (100) is read to its end
with 加载更多, each incident listed once and in the list's order, though incidents are reported
and closed while the next page is on its way; the end of the day is said, and a page that could
not be read says so and is read again with 重试."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, Route, expect

from dispatch.clock import ManualClock
from dispatch.schemas import DISPLAY_TZ
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import card, open_console
from tests.support import Account, World

# 10:00 in Beijing today: a day's incidents, reported over a few seconds, all fall on that day.
START = datetime.now(DISPLAY_TZ).replace(hour=10, minute=0, second=0, microsecond=0).astimezone(UTC)
PAGE = 100  # the history's page (web/src/console/main.js HISTORY_PAGE)
# A next page of the history, as the console asks for it (not the day's first page).
NEXT_PAGE = re.compile(r"/api/v1/incidents\?day=.*(before=|offset=[1-9])")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


async def report_many(world: World, by: Account, n: int) -> list[dict[str, Any]]:
    """``n`` incidents, a twentieth of a second apart, some at one instant (ties go by id);
    well within tier 1's minute, so that no alarm comes of them. A control room's day, not a
    burst of abuse: the operator's reports are not held to the rate a client's are."""
    world.runtime.settings.report_burst = 10 * n
    reported = []
    for i in range(n):
        if i % 5:
            world.clock.advance(0.05)
        reported.append(await world.report(by, category=("fight", "theft", "fire")[i % 3]))
    return reported


async def close(world: World, by: Account, incident_id: str) -> None:
    reply = await world.http.post(f"/api/v1/incidents/{incident_id}/close", headers=by.headers)
    assert reply.status_code == 200, reply.text


async def the_days_list(world: World, by: Account, day: str) -> list[str]:
    """The day's incidents as the server lists them, in one answer."""
    reply = await world.http.get(
        "/api/v1/incidents", params={"day": day, "limit": 1000}, headers=by.headers
    )
    assert reply.status_code == 200, reply.text
    return [incident["id"] for incident in reply.json()]


async def listed(history: Locator) -> list[str]:
    ids: list[str] = await history.locator("#history-list tbody tr").evaluate_all(
        "rows => rows.map((row) => row.dataset.incidentId)"
    )
    return ids


async def open_history(console: Page, day: str | None = None) -> Locator:
    await console.get_by_role("button", name="历史警情").click()
    history = console.locator("#history")
    await expect(history).to_have_attribute("data-state", "ready")
    if day is not None:
        await console.locator("#history-day").fill(day)
        await console.get_by_role("button", name="查询").click()
        await expect(history).to_have_attribute("data-state", "ready")
    return history


async def load_to_the_end(console: Page, history: Locator) -> int:
    """加载更多 until it is gone; how many times it was pressed."""
    more = console.get_by_role("button", name="加载更多")
    for pressed in range(10):
        if not await more.is_visible():
            return pressed
        await more.click()
        await expect(history).to_have_attribute("data-state", "ready")
    raise AssertionError("加载更多 never ended")


async def the_end_is_said(console: Page, history: Locator, n: int) -> None:
    """Below the last row: the day is listed whole, in either language; nothing more to load."""
    end = history.locator("#history-end")
    await expect(end).to_be_visible()
    await expect(end).to_have_text(f"已到底：这一天的 {n} 起警情已全部列出")
    await expect(history.locator("#history-count")).to_have_text(f"共 {n} 起")
    await expect(console.get_by_role("button", name="加载更多")).to_be_hidden()
    await console.get_by_role("button", name="English").click()
    await expect(end).to_have_text(f"End of the list: all {n} incidents of the day are listed")
    await expect(history.locator("#history-count")).to_have_text(f"{n} incidents")
    await console.get_by_role("button", name="中文").click()


async def test_load_more_lists_every_incident_of_the_day_once_as_reports_and_closes_come(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A next page asked for by offset (the rows listed) moved by one for each incident
    reported after the console counted its rows and before the server read the page: the last
    row of a page came again at the top of the next. And an incident of the next page closed
    after the server read it came on the list open, though the console had heard of its close."""
    await world.team("fixed_post")
    operator = await world.operator()
    day = START.astimezone(DISPLAY_TZ).date().isoformat()
    early = await report_many(world, operator, 2 * PAGE + 30)
    console = await open_console(browser, contexts, world)
    history = await open_history(console)
    await expect(history.locator("#history-day")).to_have_value(day)
    rows = history.locator("#history-list tbody tr")
    await expect(rows).to_have_count(PAGE)
    await expect(history.locator("#history-count")).to_have_text(f"已列出 {PAGE} 起，还有更多")

    reported_between: list[str] = []
    closed: list[str] = []

    async def next_page(route: Route) -> None:
        # Before the server reads the page: an incident reported, one listed already closed and
        # one further down the day closed.
        world.clock.advance(1)
        reported_between.append((await world.report(operator, category="fire"))["id"])
        shown = await listed(history)
        ahead = next(i["id"] for i in reversed(early) if i["id"] not in shown + closed)
        for incident_id in (shown[-1], ahead):
            await close(world, operator, incident_id)
            closed.append(incident_id)
        answer = await route.fetch()
        page = await answer.json()
        # After the server read it, before the console has it: one of its incidents closed, the
        # console hearing of it first (off its list of open incidents).
        late = next(i["id"] for i in page if i["status"] == "open")
        await close(world, operator, late)
        closed.append(late)
        await expect(card(console, late)).to_have_count(0)
        await route.fulfill(response=answer)

    await console.route(NEXT_PAGE, next_page)
    assert await load_to_the_end(console, history) == 2
    await console.unroute(NEXT_PAGE)

    assert len(reported_between) == 2
    on_the_server = await the_days_list(world, operator, day)
    assert len(on_the_server) == len(early) + 2
    shown = await listed(history)
    assert len(shown) == len(set(shown)), "an incident is listed twice"
    assert shown == on_the_server
    for incident_id in closed:
        await expect(history.locator(f'tr[data-incident-id="{incident_id}"]')).to_have_attribute(
            "data-status", "closed"
        )
    await the_end_is_said(console, history, len(on_the_server))

    # A report once the day is listed whole comes at the top, and the end says so.
    world.clock.advance(1)
    latest = await world.report(operator, category="theft")
    await expect(rows.nth(0)).to_have_attribute("data-incident-id", latest["id"])
    await expect(history.locator("#history-end")).to_have_text(
        f"已到底：这一天的 {len(on_the_server) + 1} 起警情已全部列出"
    )


async def test_a_past_day_of_exactly_two_pages_is_read_to_its_end(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A page as long as the page size said 还有更多 though it was the day's last: the list of
    a day of 200 ended on a 加载更多 that brought nothing."""
    world.long_logins()
    await world.team("fixed_post")
    operator = await world.operator()
    day = START.astimezone(DISPLAY_TZ).date().isoformat()
    reported = await report_many(world, operator, 2 * PAGE)
    for incident in reported:
        await close(world, operator, incident["id"])
    world.clock.advance(86400)  # the next day

    console = await open_console(browser, contexts, world)
    history = await open_history(console, day)
    rows = history.locator("#history-list tbody tr")
    await expect(rows).to_have_count(PAGE)

    today: list[str] = []

    async def next_page(route: Route) -> None:
        # An incident of today, reported as the past day's next page is asked for: not of it.
        today.append((await world.report(operator, category="fire"))["id"])
        await route.continue_()

    await console.route(NEXT_PAGE, next_page)
    assert await load_to_the_end(console, history) == 1
    await console.unroute(NEXT_PAGE)
    # 加载更多 pressed gave way to the end's line: the focus is there, not lost to the page.
    await expect(history.locator("#history-end")).to_be_focused()
    assert today
    shown = await listed(history)
    # Newest first, those reported at one instant by id, largest first.
    newest_first = sorted(
        reported, key=lambda i: (datetime.fromisoformat(i["reported_at"]), i["id"]), reverse=True
    )
    assert shown == [incident["id"] for incident in newest_first]
    assert shown == await the_days_list(world, operator, day)
    await the_end_is_said(console, history, 2 * PAGE)


async def test_a_page_that_cannot_be_read_says_so_and_is_read_again(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The next page failing took the rows listed off the page, said 历史警情读取失败 alone,
    and left only 查询, which read the day from its start again."""
    await world.team("fixed_post")
    operator = await world.operator()
    day = START.astimezone(DISPLAY_TZ).date().isoformat()
    await report_many(world, operator, PAGE + 20)
    console = await open_console(browser, contexts, world)
    history = await open_history(console)
    rows = history.locator("#history-list tbody tr")
    await expect(rows).to_have_count(PAGE)
    first_page = await listed(history)

    async def unreachable(route: Route) -> None:
        await route.abort("connectionrefused")

    await console.route(NEXT_PAGE, unreachable)
    await console.get_by_role("button", name="加载更多").click()
    problem = history.get_by_role("alert")
    await expect(problem).to_have_text(
        "后面的警情读取失败：无法连接服务器，请检查网络。已列出的仍在，可按“重试”再读。"
    )
    await expect(rows).to_have_count(PAGE)
    assert await listed(history) == first_page
    await expect(history.get_by_role("button", name="重试")).to_be_focused()
    await expect(console.get_by_role("button", name="加载更多")).to_be_hidden()
    await expect(history.locator("#history-end")).to_be_hidden()
    await console.get_by_role("button", name="English").click()
    await expect(problem).to_have_text(
        "The next incidents could not be read: Cannot reach the server; check the network. "
        "Those listed stay; press Retry to read them again."
    )
    await console.get_by_role("button", name="中文").click()

    # Meanwhile an incident is reported: it comes at the top as ever.
    world.clock.advance(1)
    latest = await world.report(operator, category="fire")
    await expect(rows).to_have_count(PAGE + 1)
    await expect(rows.nth(0)).to_have_attribute("data-incident-id", latest["id"])

    await console.unroute(NEXT_PAGE)
    await history.get_by_role("button", name="重试").click()
    await expect(history).to_have_attribute("data-state", "ready")
    await expect(problem).to_have_count(0)
    shown = await listed(history)
    assert len(shown) == len(set(shown)), "an incident is listed twice"
    assert shown == await the_days_list(world, operator, day)
    assert len(shown) == PAGE + 21
    await the_end_is_said(console, history, PAGE + 21)
