"""历史警情 on the console: once closed an incident left the console, and no page could look it
up. The history lists a day's incidents (Beijing time), closed ones included, with each tier's
outcome, and opens one's record read-only: its tiers, teams and hops at the server's times."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from playwright.async_api import Browser, Page, Request, Route, expect

from dispatch.schemas import DISPLAY_TZ
from tests.pages.conftest import Opened, desk_context, log_in
from tests.pages.test_console_and_phone import SECOND, card, open_console
from tests.support import QINGXI, World


async def test_a_closed_incident_is_looked_up_in_the_history_with_its_record(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post", name="三中驻点队")
    leader = await world.leader(team)
    operator = await world.operator()
    met = await world.report(operator, category="fight")
    world.clock.advance(40)
    await world.arrive(met, team, leader)
    world.clock.advance(20)
    closed = await world.http.post(f"/api/v1/incidents/{met['id']}/close", headers=operator.headers)
    assert closed.status_code == 200, closed.text
    world.clock.advance(30)
    still_open = await world.report(operator, category="theft")

    console = await open_console(browser, contexts, world)
    await expect(card(console, still_open["id"])).to_have_count(1)
    await expect(card(console, met["id"])).to_have_count(0)  # closed: off the console's list

    await console.get_by_role("button", name="历史警情").click()
    history = console.locator("#history")
    await expect(history).to_have_attribute("data-state", "ready")
    today = datetime.fromisoformat(met["reported_at"]).astimezone(DISPLAY_TZ).date()
    await expect(console.locator("#history-day")).to_have_value(today.isoformat())
    rows = history.locator("#history-list tbody tr")
    await expect(rows).to_have_count(2)
    # Newest first: the open one, then the closed one.
    await expect(rows.nth(0)).to_have_attribute("data-incident-id", still_open["id"])
    row = history.locator(f'tr[data-incident-id="{met["id"]}"]')
    await expect(row).to_have_attribute("data-status", "closed")
    await expect(row).to_contain_text("打架斗殴")
    await expect(row).to_contain_text(met["reported_at"][:19].replace("T", " "))
    await expect(row).to_contain_text(f"经度 {QINGXI[0]:.6f}，纬度 {QINGXI[1]:.6f}")
    await expect(row).to_contain_text("结案")
    tier1 = row.locator('td[data-tier="1"]')
    await expect(tier1).to_have_attribute("data-outcome", "met")
    await expect(tier1).to_contain_text("达标 · 40.0 秒")
    await expect(history.locator("#history-count")).to_have_text("共 2 起")

    await row.get_by_role("button").click()
    record = console.locator("#history-record")
    await expect(record).to_have_attribute("data-state", "ready")
    await expect(record).to_have_attribute("data-incident-id", met["id"])
    await expect(console.locator("#history-record-title")).to_have_text("警情记录 · 打架斗殴")
    await expect(record.locator('.record-tiers tr[data-tier="1"]')).to_contain_text("达标")
    post = record.locator(f'.record-dispatch[data-team-id="{team["id"]}"]')
    await expect(post).to_contain_text("三中驻点队")
    await expect(post.locator('.hop-done[data-hop="alerted"]')).to_have_count(1)
    arrived = datetime.fromisoformat(met["reported_at"]) + timedelta(seconds=40)
    await expect(post.locator('[data-hop="arrived"] time')).to_contain_text(
        arrived.astimezone(DISPLAY_TZ).strftime("%H:%M:%S")
    )
    await expect(record).not_to_contain_text("代报到场")  # read-only

    await console.get_by_role("button", name="English").click()
    await expect(console.locator("#history-title")).to_have_text("Past incidents")
    await expect(tier1).to_contain_text("Met · 40.0 s")
    await expect(console.locator("#history-record-title")).to_have_text("Incident record · Fight")
    await console.get_by_role("button", name="中文").click()

    # Another day: none.
    await console.locator("#history-day").fill((today - timedelta(days=1)).isoformat())
    await console.get_by_role("button", name="查询").click()
    await expect(history).to_contain_text("这一天没有警情")
    await expect(rows).to_have_count(0)

    await console.get_by_role("button", name="返回未结警情").click()
    await expect(history).to_be_hidden()
    await expect(card(console, still_open["id"])).to_be_visible()


async def test_the_history_judges_a_tier_as_its_record_does(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """At its very deadline a tier is not yet breached by the timer (an arrival then still
    meets it): the list and the record both read it pending (计时中), as the report does, and
    both 超时 once the timer breached it. The record read 超时 already at the instant."""
    await world.team("fixed_post")
    operator = await world.operator()
    # Reported on a whole millisecond, the deadline is one the page's clock (in ms) can be at.
    world.clock.advance((1000 - world.clock.now().microsecond % 1000) / 1_000_000)
    incident = await world.report(operator, category="fight")
    world.clock.advance(60)
    stored = await world.incident(operator, incident["id"])
    assert stored["chain"][0]["status"] == "pending"
    deadline = datetime.fromisoformat(stored["chain"][0]["deadline"])
    assert world.clock.now() == deadline and deadline.microsecond % 1000 == 0

    # The page's clock stands still, so that the server's clock as the page knows it (from the
    # welcome, with no time for the round trip) is the server's own, held at the deadline.
    context = await desk_context(browser, contexts)
    console = await context.new_page()
    await console.clock.install(time=datetime.now(UTC))
    await console.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))
    await log_in(console, world.base_url + "/console", operator)
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await console.get_by_role("button", name="历史警情").click()
    history = console.locator("#history")
    await expect(history).to_have_attribute("data-state", "ready")
    tier1 = history.locator(f'tr[data-incident-id="{incident["id"]}"] td[data-tier="1"]')
    await tier1.locator("xpath=..").get_by_role("button").click()
    in_record = console.locator('#history-record .record-tiers tr[data-tier="1"]')
    await expect(in_record).to_have_attribute("data-outcome", "pending")
    await expect(in_record).to_contain_text("计时中")
    await expect(tier1).to_have_attribute("data-outcome", "pending")
    await expect(tier1).to_contain_text("计时中")

    # Beyond it the timer breaches the tier; the list takes the breach as it comes.
    world.clock.advance(0.001)
    await expect(tier1).to_have_attribute("data-outcome", "breached", timeout=10 * SECOND)
    await expect(tier1).to_contain_text("超时 · 无人到场")
    await console.get_by_role("button", name="关闭").click()
    await tier1.locator("xpath=..").get_by_role("button").click()
    await expect(in_record).to_have_attribute("data-outcome", "breached")
    await expect(in_record).to_contain_text("超时")


async def test_the_history_follows_the_days_incidents_as_they_change(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The day shown takes each report, breach, arrival and close as the console hears of it,
    without asking for the list again: what the operator scrolled to stays where it was."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    earlier = []
    for _ in range(8):
        earlier.append(await world.report(operator, category="theft"))
        world.clock.advance(1)
    console = await open_console(browser, contexts, world, height=480)
    await console.get_by_role("button", name="历史警情").click()
    history = console.locator("#history")
    await expect(history).to_have_attribute("data-state", "ready")
    rows = history.locator("#history-list tbody tr")
    await expect(rows).to_have_count(8)
    asked: list[str] = []

    def on_request(request: Request) -> None:
        if "/api/v1/incidents?" in request.url:
            asked.append(request.url)

    console.on("request", on_request)
    # The operator looks at the day's first incidents, at the bottom of the list.
    oldest = history.locator(f'tr[data-incident-id="{earlier[0]["id"]}"]')
    await oldest.scroll_into_view_if_needed()
    scrolled = await console.evaluate("window.scrollY")
    assert scrolled > 0

    fire = await world.report(operator, category="fire")
    await expect(rows).to_have_count(9)
    await expect(rows.nth(0)).to_have_attribute("data-incident-id", fire["id"])
    await expect(rows.nth(0)).to_contain_text("火情")
    await expect(history.locator("#history-count")).to_have_text("共 9 起")

    # Past tier 1's deadline, nobody there: 超时 as the breach comes; an arrival, then a close.
    world.clock.advance(61)
    tier1 = rows.nth(0).locator('td[data-tier="1"]')
    await expect(tier1).to_have_attribute("data-outcome", "breached", timeout=10 * SECOND)
    await expect(tier1).to_contain_text("超时 · 无人到场")
    await world.arrive(fire, team, leader)
    await expect(tier1).to_contain_text("超时 · 1 分 01.0 秒")
    closed = await world.http.post(
        f"/api/v1/incidents/{fire['id']}/close", headers=operator.headers
    )
    assert closed.status_code == 200, closed.text
    await expect(rows.nth(0)).to_have_attribute("data-status", "closed")
    await expect(rows.nth(0)).to_contain_text("结案")

    assert asked == []
    await expect(oldest).to_be_in_viewport()
    assert await console.evaluate("window.scrollY") >= scrolled


async def test_the_next_operator_on_the_console_sees_nothing_of_the_one_who_signed_out(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Signing out left the record the operator had opened in 历史警情 on the page, his day's
    list, his feed and his late-only filter: the next operator on the same console found them
    as he opened 历史警情, or at once."""
    await world.team("fixed_post")
    first = await world.operator()
    incident = await world.report(first, category="fight")
    world.clock.advance(61)  # tier 1 late: the feed says so and the late-only filter shows

    console = await open_console(browser, contexts, world)
    await expect(console.locator("#feed li")).not_to_have_count(0)
    await console.locator("#late-only").click()
    await expect(console.locator("#late-only")).to_have_attribute("aria-pressed", "true")
    await console.get_by_role("button", name="历史警情").click()
    history = console.locator("#history")
    await expect(history).to_have_attribute("data-state", "ready")
    await history.locator(f'tr[data-incident-id="{incident["id"]}"]').get_by_role("button").click()
    record = console.locator("#history-record")
    await expect(record).to_have_attribute("data-state", "ready")

    await console.get_by_role("button", name="退出").click()
    await expect(console.locator("#login")).to_be_visible()
    await expect(record).to_be_hidden()
    assert await console.evaluate("sessionStorage.length") == 0

    second = await world.operator()
    await console.get_by_label("用户名").fill(second.name)
    await console.get_by_label("密码").fill(second.password)
    await console.get_by_role("button", name="登录").click()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(record).to_be_hidden()
    await expect(console.locator("#history-record-body")).to_be_empty()
    await expect(console.locator("#feed li")).to_have_count(0)
    await expect(console.locator("#late-only")).to_have_attribute("aria-pressed", "false")
    await expect(console.locator("#history-list")).to_be_empty()
    await expect(console.locator("#history-day")).to_have_value("")

    await console.get_by_role("button", name="历史警情").click()
    await expect(history).to_have_attribute("data-state", "ready")
    await expect(record).to_be_hidden()
    await expect(console.locator("#history-record-title")).to_have_text("")


async def ask_records_of_an_incident_that_does_not_exist(page: Page) -> None:
    """The page's next requests for a record ask the server for an incident id it has never
    issued: the server answers them itself (404, incident_id), as it would for one gone."""
    missing = uuid.uuid4().hex

    async def elsewhere(route: Route) -> None:
        await route.continue_(url=route.request.url.rsplit("/", 1)[0] + "/" + missing)

    await page.route("**/api/v1/reports/incidents/*", elsewhere)


async def the_record_fails_then_is_read_again(page: Page, box: str, opened_id: str) -> None:
    """A record that could not be read: the box says what failed and what to do, as an alert
    (announced by a screen reader), in either language; 重试 reads it again."""
    record = page.locator(box)
    await expect(record).to_have_attribute("data-state", "failed")
    await expect(record).to_have_attribute("data-incident-id", opened_id)
    alert = record.get_by_role("alert")
    await expect(alert).to_have_text(
        "警情记录读取失败：警情不存在（可能已被删除）。可按“重试”再读一次。"
    )
    await page.get_by_role("button", name="English").click()
    await expect(alert).to_have_text(
        "The incident record could not be read: The incident does not exist "
        "(it may have been removed). Press Retry to read it again."
    )
    await page.get_by_role("button", name="中文").click()
    await page.unroute("**/api/v1/reports/incidents/*")
    await record.get_by_role("button", name="重试").click()
    await expect(record).to_have_attribute("data-state", "ready")
    await expect(record.get_by_role("alert")).to_have_count(0)
    await expect(record.locator(".record-tiers")).to_be_visible()


async def test_a_record_the_history_cannot_read_says_what_failed_and_is_read_again(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    incident = await world.report(operator, category="fight")
    console = await open_console(browser, contexts, world)
    await console.get_by_role("button", name="历史警情").click()
    history = console.locator("#history")
    await expect(history).to_have_attribute("data-state", "ready")

    await ask_records_of_an_incident_that_does_not_exist(console)
    await history.locator(f'tr[data-incident-id="{incident["id"]}"]').get_by_role("button").click()
    await the_record_fails_then_is_read_again(console, "#history-record", incident["id"])
