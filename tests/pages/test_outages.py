"""Pages opened while the server cannot answer (restarting behind a proxy, busy, out of reach):
each says so and finds its way in by itself once the server is back, never blank or empty."""

from __future__ import annotations

from collections.abc import Callable

from playwright.async_api import Browser, Route, expect

from tests.pages.conftest import Opened, desk_context, log_in
from tests.pages.test_console_and_phone import SECOND, away, card, open_console, open_phone
from tests.support import World


class Outage:
    """Requests a page makes, answered by a proxy whose server is down until ``end()``."""

    def __init__(self, status: int, body: str, content_type: str) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.on = True
        self.refused = 0

    async def handle(self, route: Route) -> None:
        if not self.on:
            await route.continue_()
            return
        self.refused += 1
        await route.fulfill(
            status=self.status,
            body=self.body,
            content_type=self.content_type,
            headers={"retry-after": "1"},
        )

    def end(self) -> None:
        self.on = False


def bad_gateway() -> Outage:
    return Outage(502, "<html><body>502 Bad Gateway</body></html>", "text/html")


def busy() -> Outage:
    return Outage(503, '{"error": "busy", "detail": "the server is busy"}', "application/json")


def paths(*wanted: str) -> Callable[[str], bool]:
    """A route matcher: the URLs whose path (without the query) is one of ``wanted``."""

    def matches(url: str) -> bool:
        path = "/" + url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
        return path in wanted

    return matches


async def test_a_page_opened_while_the_server_restarts_says_so_and_opens_once_it_is_back(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    operator = await world.operator()
    leader = await world.leader(post)
    for path, account, signed_in in [
        ("/console", operator, "#incidents"),
        ("/m", leader, "#team"),
        ("/console/reports", operator, "#filters"),
    ]:
        page = await (await desk_context(browser, contexts)).new_page()
        await log_in(page, world.base_url + path, account)
        await expect(page.locator("#app")).to_be_visible()

        # Opened again (a reload, a phone waking) just as the server restarts: the proxy in
        # front answers 502 for it. The session on the device is good; the page says it waits.
        outage = bad_gateway()
        await page.route(paths("/api/v1/auth/me"), outage.handle)
        await page.reload()
        gate = page.locator("#gate")
        await expect(gate).to_be_visible()
        await expect(gate).to_contain_text("页面暂时打不开：服务器出错（502）")
        await expect(gate).to_contain_text("正在自动重试")
        await expect(page.locator("#app")).to_be_hidden()
        await expect(page.locator("#login")).to_be_hidden()
        await page.get_by_role("button", name="English").click()
        await expect(gate).to_contain_text("The page cannot open yet: Server error (502)")
        await page.get_by_role("button", name="中文").click()

        # The server is back: the page opens by itself, no reload, no login.
        outage.end()
        await expect(page.locator("#app")).to_be_visible(timeout=15 * SECOND)
        await expect(page.locator(signed_in)).to_be_visible()
        await expect(gate).to_be_hidden()
        await expect(page.locator("#login")).to_be_hidden()


async def test_the_console_opened_while_the_server_is_busy_loads_its_incidents_when_it_has_room(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    incident = await world.report(operator, category="fire")
    console = await open_console(browser, contexts, world)
    await expect(card(console, incident["id"])).to_be_visible()

    # Reopened while the server is too busy for the teams and the open incidents: the
    # websocket gets through, so the badge says live; the list must not read as empty.
    outage = busy()
    await console.route(paths("/api/v1/teams", "/api/v1/incidents"), outage.handle)
    await console.reload()
    problem = console.locator("#load-problem")
    await expect(problem).to_be_visible()
    await expect(problem).to_contain_text("未能加载联防队和警情：服务器繁忙")
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")

    outage.end()
    await expect(card(console, incident["id"])).to_be_visible(timeout=15 * SECOND)
    await expect(problem).to_be_hidden()
    await expect(console.locator("#incident-count")).to_have_text("（1）")
    # The team's site and the incident are on the map.
    await expect(console.locator("#map path.leaflet-interactive")).to_have_count(2)


async def test_the_phone_opened_while_the_server_is_busy_lists_its_incidents_when_it_has_room(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    incident = await world.report(await world.operator(), category="theft")
    await expect(phone.locator("#alert")).to_be_visible()
    await phone.keyboard.press("Escape")
    await expect(phone.locator(f'article[data-incident-id="{incident["id"]}"]')).to_be_visible()

    # Reopened while the server is too busy for the team and the open incidents. The alert came
    # before the last message this phone saw, so no replay brings it back: only the list can.
    outage = busy()
    await phone.route(paths(f"/api/v1/teams/{post['id']}", "/api/v1/incidents"), outage.handle)
    await phone.reload()
    problem = phone.locator("#load-problem")
    await expect(problem).to_be_visible()
    await expect(problem).to_contain_text("未能加载本队信息和警情")
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")

    outage.end()
    row = phone.locator(f'article[data-incident-id="{incident["id"]}"]')
    await expect(row).to_be_visible(timeout=15 * SECOND)
    await expect(row).to_contain_text("盗窃")
    await expect(phone.locator("#team")).to_contain_text(post["name"])
    await expect(problem).to_be_hidden()


async def test_the_pages_say_at_once_when_the_device_goes_offline_and_catch_up_when_back(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    console = await open_console(browser, contexts, world)

    # The network goes (a lift, flight mode): the sockets would look open for minutes more, so
    # the badge must not go on saying the line is live.
    for page in (phone, console):
        await page.context.set_offline(True)
    for page in (phone, console):
        await expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
        await expect(page.locator("#conn")).to_have_text("网络已断开，恢复后自动重连")
    incident = await world.report(await world.operator(), category="robbery")

    # Back: at once, and with what happened meanwhile.
    for page in (phone, console):
        await page.context.set_offline(False)
    for page in (phone, console):
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(card(console, incident["id"])).to_contain_text("抢劫抢夺")
    await expect(phone.locator("#alert")).to_contain_text("抢劫抢夺")
