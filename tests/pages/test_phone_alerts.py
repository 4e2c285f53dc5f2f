"""The leader's phone with more than one alert, a line that drops, a keyboard, a phone handed
over at the change of shift, and a clean console: in headless Chromium against the real server."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    Route,
    expect,
)

from tests.conftest import RunningServer
from tests.pages.conftest import (
    PHONE,
    Opened,
    close_phone,
    desk_context,
    log_in,
    on_the_servers_clock,
)
from tests.pages.test_console_and_phone import SECOND, away, card_on_phone, open_phone
from tests.support import Account, World


async def restart(server: RunningServer) -> RunningServer:
    """The same server back on the same address, as after a deploy or an outage."""
    again = RunningServer(server.settings, server.clock)
    again.port = again.server.config.port = server.port
    await again.start()
    return again


@asynccontextmanager
async def back_and_live(server: RunningServer, phone: Page) -> AsyncIterator[RunningServer]:
    """The server back on its address (``restart``) and ``phone`` live on it again, however
    far its reconnecting has backed off; the server stopped again when the block ends."""
    restarted = await restart(server)
    try:
        await expect(phone.locator("#conn")).to_have_attribute(
            "data-state", "live", timeout=15 * SECOND
        )
        yield restarted
    finally:
        await restarted.stop()


async def held(page: Page, url: str) -> asyncio.Event:
    """Requests of ``page`` to ``url`` (a glob) wait on their way, as over a slow line, until
    the event returned is set."""
    released = asyncio.Event()

    async def slow(route: Route) -> None:
        await released.wait()
        await route.continue_()

    await page.route(url, slow)
    return released


async def a_fixed_posts_phone(
    world: World, browser: Browser, contexts: Opened
) -> tuple[Account, Account, Page]:
    """A fixed post's leader with the phone page open 300 m away, and an operator to report."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    return leader, operator, await open_phone(browser, contexts, world, leader, away(300))


def outbox(leader: Account) -> str:
    return f"localStorage.getItem('dispatch.outbox.{leader.id}')"


async def accept_on_phone(phone: Page) -> None:
    """Tap 接警 on the alert on screen: taken by the server at the tap's own request, answered
    200, not kept on the phone to be sent again."""
    sent: list[Request] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/accept"):
            sent.append(request)

    phone.on("request", on_request)
    try:
        async with phone.expect_response(lambda r: r.url.endswith("/accept")) as reply:
            await phone.get_by_role("button", name="接警").click()
        assert (await reply.value).status == 200
    finally:
        phone.remove_listener("request", on_request)
    assert len(sent) == 1


async def test_a_second_alert_waits_behind_the_first_and_comes_up_once_it_is_answered(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    alert = phone.locator("#alert")
    waiting = phone.locator("#alert-waiting")

    first = await world.report(operator, category="fight")
    await expect(alert).to_contain_text("打架斗殴")
    await expect(waiting).to_be_hidden()
    world.clock.advance(1)
    second = await world.report(operator, category="fire")
    await expect(card_on_phone(phone, second["id"])).to_have_count(1)

    # The one being read stays; the screen says another waits, and it keeps ringing.
    await expect(waiting).to_have_text("还有 1 条警情待接 下一条")
    await expect(alert.locator("#alert-title")).to_contain_text("打架斗殴")
    await expect(alert).to_have_attribute("data-ringing", "true")

    # Accepted: the next one comes up, still ringing, nothing more waiting behind it.
    await accept_on_phone(phone)
    await expect(alert.locator("#alert-title")).to_contain_text("火情")
    await expect(waiting).to_be_hidden()
    await expect(alert).to_have_attribute("data-ringing", "true")
    await accept_on_phone(phone)
    await expect(phone.locator("#accept")).to_contain_text("已接警")
    await expect(alert).to_have_attribute("data-ringing", "false")
    await phone.keyboard.press("Escape")
    await expect(alert).to_be_hidden()
    for incident in (first, second):
        stored = await world.incident(operator, incident["id"])
        assert stored["dispatches"][0]["accepted_at"] is not None

    # Put away unanswered: the next comes up; once none is left the screen goes and the
    # unanswered ones stay in the list.
    third = await world.report(operator, category="theft")
    await expect(alert.locator("#alert-title")).to_contain_text("盗窃")
    world.clock.advance(1)
    fourth = await world.report(operator, category="robbery")
    await expect(waiting).to_contain_text("还有 1 条警情待接")
    await phone.get_by_role("button", name="收起").click()
    await expect(alert.locator("#alert-title")).to_contain_text("抢劫抢夺")
    await expect(alert).to_have_attribute("data-ringing", "true")
    await phone.keyboard.press("Escape")
    await expect(alert).to_be_hidden()
    await expect(alert).to_have_attribute("data-ringing", "false")
    for incident in (third, fourth):
        await expect(card_on_phone(phone, incident["id"])).to_have_class("incident incident-new")


async def test_a_double_tap_on_hide_does_not_put_away_the_alert_that_came_up_under_it(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    alert = phone.locator("#alert")
    await world.report(operator, category="fight")
    await expect(alert.locator("#alert-title")).to_contain_text("打架斗殴")
    world.clock.advance(1)
    await world.report(operator, category="fire")
    await expect(phone.locator("#alert-waiting")).to_be_visible()

    # A thumb's double tap on 收起: the second tap, 80 ms on, lands on the next alert's 收起.
    box = await phone.locator("#alert-hide").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await phone.touchscreen.tap(x, y)
    await phone.wait_for_timeout(80)
    await phone.touchscreen.tap(x, y)
    await phone.wait_for_timeout(300)
    await expect(alert).to_be_visible()
    await expect(alert.locator("#alert-title")).to_contain_text("火情")
    await expect(alert).to_have_attribute("data-ringing", "true")

    # Read, it is put away by a tap as before.
    await phone.wait_for_timeout(600)
    await phone.touchscreen.tap(x, y)
    await expect(alert).to_be_hidden()


async def test_alerts_missed_while_away_come_up_most_urgent_first(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    context = phone.context
    await close_phone(phone, world, leader)

    await world.report(operator, category="fight")
    world.clock.advance(2)
    await world.report(operator, category="fire")
    again = await context.new_page()
    await again.goto(world.base_url + "/m")
    await expect(again.locator("#missed")).to_contain_text("漏收 2 条派警")
    # The earlier report's deadline is the nearer one.
    await expect(again.locator("#alert-title")).to_contain_text("打架斗殴")
    await expect(again.locator("#alert-waiting")).to_contain_text("还有 1 条警情待接")
    await again.get_by_role("button", name="下一条").click()
    await expect(again.locator("#alert-title")).to_contain_text("火情")
    await expect(again.locator("#alert-waiting")).to_contain_text("还有 1 条警情待接")
    # Put away: the other comes up again, the last one put away ends it.
    await again.keyboard.press("Escape")
    await expect(again.locator("#alert-title")).to_contain_text("打架斗殴")
    await expect(again.locator("#alert-waiting")).to_be_hidden()


async def test_an_alert_taken_but_never_put_on_screen_comes_up_when_the_page_opens_again(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The page went (swiped away, its tab reclaimed) between taking an alert and showing it:
    the seq kept on the phone is past the alert, so it is not replayed, and the server's record
    says nobody has seen it. It rings as missed; once shown, a reload leaves it in the list."""
    leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    context = phone.context
    await close_phone(phone, world, leader)
    incident = await world.report(operator, category="fire")
    # What the page did before it went: took the alert, acknowledged it, kept its seq.
    socket = await world.connect(leader)
    seq = (await socket.next_of("alert"))["seq"]
    await socket.ack(seq)
    await socket.close()
    await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])
    keep_seq = f"localStorage.setItem('dispatch.seq.{leader.id}', '{seq}')"
    # (Not in the page's first blank document, which has no storage.)
    await context.add_init_script(f"if (location.href.startsWith('http')) {keep_seq}")

    again = await context.new_page()
    await again.goto(world.base_url + "/m")
    await expect(again.locator("#missed")).to_have_text("离线期间漏收 1 条派警，已补收，待您处理")
    await expect(again.locator("#alert-title")).to_contain_text("火情")
    await expect(again.locator("#alert")).to_have_attribute("data-ringing", "true")
    shown = await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["shown_at"])
    assert shown["dispatches"][0]["accepted_at"] is None

    await again.reload()
    await expect(again.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(card_on_phone(again, incident["id"])).to_contain_text("火情")
    await expect(again.locator("#alert")).to_be_hidden()
    await expect(again.locator("#missed")).to_be_hidden()


async def test_an_accept_tapped_while_the_server_is_down_is_sent_once_it_is_back(
    world: World, server: RunningServer, browser: Browser, contexts: Opened
) -> None:
    leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    incident = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()

    await server.stop()
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#alert-position")).to_contain_text("未能连上服务器")
    # The tries over, the tap is kept on the phone and says so; the alert stops ringing.
    pending = phone.locator("#alert-outbox")
    await expect(pending).to_contain_text("接警未发出", timeout=15 * SECOND)
    await expect(pending).to_contain_text("连上服务器后自动补发")
    await expect(phone.locator("#accept")).to_have_text("接警待发送")
    await expect(phone.locator("#alert")).to_have_attribute("data-ringing", "false")
    kept = json.loads(await phone.evaluate(outbox(leader)))
    assert [(e["action"], e["dispatch_id"]) for e in kept] == [
        ("accept", incident["dispatches"][0]["id"])
    ]
    tapped = kept[0]["body"]["device_time"]
    await phone.keyboard.press("Escape")
    await expect(phone.locator("#outbox")).to_have_text("1 项操作等待发送到服务器，连上后自动补发")
    row = card_on_phone(phone, incident["id"])
    await expect(row).to_contain_text("接警待发送")

    restarted = await restart(server)
    try:
        await expect(row).to_contain_text("已接警", timeout=20 * SECOND)
        await expect(phone.locator("#outbox")).to_be_hidden()
        assert await phone.evaluate(outbox(leader)) is None
        stored = await world.incident(operator, incident["id"])
        assert stored["dispatches"][0]["accepted_at"] is not None
        # Recorded when it reached the server, with the phone's clock at the tap beside it.
        events = (
            await world.http.get(
                f"/api/v1/incidents/{incident['id']}/events", headers=operator.headers
            )
        ).json()
        (accepted,) = [e for e in events if e["type"] == "accepted"]
        assert datetime.fromisoformat(accepted["data"]["device_time"]) == datetime.fromisoformat(
            tapped
        )
    finally:
        await restarted.stop()


async def test_a_tap_on_its_way_over_a_slow_line_is_said_to_be_sending_not_unsent(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()
    released = await held(phone, "**/accept")
    await phone.get_by_role("button", name="接警").click()
    # Nothing has failed: the tap is on its way, not kept unsent.
    line = phone.locator("#alert-outbox")
    await expect(line).to_have_text(re.compile(r"^接警发送中（\d\d:\d\d:\d\d 点击）…$"))
    await expect(line).to_have_attribute("data-state", "sending")
    await expect(phone.locator("#accept")).to_have_text("接警发送中…")
    await phone.wait_for_timeout(500)
    await expect(line).not_to_contain_text("未发出")
    await expect(phone.locator("#outbox")).to_be_hidden()
    released.set()
    await expect(phone.locator("#accept")).to_contain_text("已接警")
    await expect(line).to_be_hidden()


async def test_a_kept_tap_survives_a_reload_and_one_the_server_refuses_is_dropped_saying_why(
    world: World, server: RunningServer, browser: Browser, contexts: Opened
) -> None:
    leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    context = phone.context
    closing = await world.report(operator, category="fight")
    await expect(phone.locator("#alert")).to_contain_text("打架斗殴")
    world.clock.advance(1)
    arriving = await world.report(operator, category="fire")
    await expect(phone.locator("#alert-waiting")).to_be_visible()

    await server.stop()
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#alert-title")).to_contain_text("火情", timeout=15 * SECOND)
    await phone.get_by_role("button", name="已到场").click()
    await expect(phone.locator("#alert-outbox")).to_contain_text("到场未发出", timeout=15 * SECOND)
    assert len(json.loads(await phone.evaluate(outbox(leader)))) == 2
    await phone.close()

    restarted = await restart(server)
    try:
        # Closed meanwhile: that acceptance can never be recorded. The arrival still can.
        closed = await world.http.post(
            f"/api/v1/incidents/{closing['id']}/close", headers=operator.headers
        )
        assert closed.status_code == 200, closed.text
        again = await context.new_page()
        await again.goto(world.base_url + "/m")
        await expect(again.locator("#outbox")).to_have_text("接警未记录：警情已结案")
        await expect(card_on_phone(again, arriving["id"])).to_contain_text("已到场")
        assert await again.evaluate(outbox(leader)) is None
        stored = await world.incident(operator, arriving["id"])
        arrival = stored["dispatches"][0]
        assert arrival["arrival_source"] == "button"
        assert arrival["arrival_device_time"] is not None
        gone = await world.incident(operator, closing["id"])
        assert gone["dispatches"][0]["accepted_at"] is None
    finally:
        await restarted.stop()


async def test_keyboard_focus_stays_in_the_list_while_positions_come_in(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    incident = await world.report(operator)
    await accept_on_phone(phone)
    await expect(phone.locator("#accept")).to_contain_text("已接警")
    await phone.keyboard.press("Escape")
    await expect(phone.locator("#alert")).to_be_hidden()

    button = card_on_phone(phone, incident["id"]).get_by_role("button", name="查看")
    await button.focus()
    await button.evaluate("el => { el.dataset.marked = 'yes'; }")
    for _ in range(2):
        async with phone.expect_response(lambda r: r.url.endswith("/position")) as reply:
            pass
        assert (await reply.value).status == 200
        await phone.wait_for_timeout(100)  # the distance redrawn
        assert await phone.evaluate("document.activeElement.dataset.marked") == "yes"
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#alert")).to_be_visible()


# Every call of navigator.vibrate, with whether the page had been tapped by then. Headless
# Chromium under Playwright counts pages as activated from the start, so the activation a phone's
# browser keeps (tapped or not) is kept here from the page's own taps and keys.
VIBRATIONS = """
let tapped = false;
addEventListener('pointerdown', () => { tapped = true; }, true);
addEventListener('keydown', () => { tapped = true; }, true);
Object.defineProperty(navigator, 'userActivation', {
    value: { get hasBeenActive() { return tapped; }, get isActive() { return tapped; } },
});
window.__vibrations = [];
const nativeVibrate = navigator.vibrate ? navigator.vibrate.bind(navigator) : null;
navigator.vibrate = (pattern) => {
    window.__vibrations.push({ pattern, tapped: navigator.userActivation.hasBeenActive });
    return nativeVibrate ? nativeVibrate(pattern) : false;
};
"""


def noise(page: Page, seen: list[str]) -> None:
    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning") or "vibrate" in message.text:
            seen.append(f"console {message.type}: {message.text}")

    def response(reply: Response) -> None:
        if reply.status >= 400:
            seen.append(f"{reply.status} {reply.request.method} {reply.url}")

    page.on("console", console)
    page.on("response", response)


async def test_pages_load_without_errors_and_a_new_phone_sends_no_positions_for_closed_incidents(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    reply = await world.http.get("/favicon.ico")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/svg+xml"
    assert reply.text.startswith("<svg")

    desk = await (await desk_context(browser, contexts)).new_page()
    seen: list[str] = []
    noise(desk, seen)
    await log_in(desk, world.base_url + "/console", operator)
    await expect(desk.locator("#conn")).to_have_attribute("data-state", "live")
    await desk.goto(world.base_url + "/console/reports")  # the login is kept
    await desk.wait_for_load_state("networkidle")
    assert seen == [], seen

    # Accepted on another phone, then closed: a new phone's replay has it open and accepted
    # for a moment, and must not start sending positions for it.
    done = await world.report(operator, category="fire")
    accepted = await world.http.post(
        f"/api/v1/dispatches/{done['dispatches'][0]['id']}/accept", headers=leader.headers
    )
    assert accepted.status_code == 200, accepted.text
    closed = await world.http.post(
        f"/api/v1/incidents/{done['id']}/close", headers=operator.headers
    )
    assert closed.status_code == 200, closed.text

    # Not emulated as a touch phone: there, Chromium counts the page as tapped from the start.
    lon, lat = away(300)
    context = await browser.new_context(
        viewport=PHONE,
        locale="zh-CN",
        geolocation={"longitude": lon, "latitude": lat, "accuracy": 10},
        permissions=["geolocation"],
    )
    await on_the_servers_clock(context)
    contexts.watch(context)
    await context.add_init_script(VIBRATIONS)
    page = await context.new_page()
    positions: list[str] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/position"):
            positions.append(request.url)

    page.on("request", on_request)
    noise(page, seen)
    await log_in(page, world.base_url + "/m", leader)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(page.locator("#incidents")).to_contain_text("暂无警情")
    await page.wait_for_timeout(1500)
    assert positions == []
    await page.close()

    # Opened again with the login kept, nobody has touched the page: an alert rings without
    # the vibration browsers refuse before a tap.
    untouched = await context.new_page()
    untouched.on("request", on_request)
    noise(untouched, seen)
    await untouched.goto(world.base_url + "/m")
    await expect(untouched.locator("#conn")).to_have_attribute("data-state", "live")
    await world.report(operator, category="robbery")
    await expect(untouched.locator("#alert")).to_have_attribute("data-ringing", "true")
    assert await untouched.evaluate("navigator.userActivation.hasBeenActive") is False
    await untouched.wait_for_timeout(3000)  # two rings
    assert await untouched.evaluate("window.__vibrations") == []
    assert seen == [], seen
    assert positions == []
    # Once tapped, it vibrates as well.
    await untouched.locator("#alert-title").click()
    for _ in range(50):
        if await untouched.evaluate("window.__vibrations.length"):
            break
        await untouched.wait_for_timeout(100)
    vibrations = await untouched.evaluate("window.__vibrations")
    assert vibrations and all(v["tapped"] for v in vibrations)


async def test_the_next_leader_on_a_shared_phone_is_alerted_to_what_the_last_one_put_away(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    day_leader, night_leader = await world.leader(post), await world.leader(post)
    phone = await open_phone(browser, contexts, world, day_leader, away(300))
    alert = phone.locator("#alert")
    incident = await world.report(await world.operator())
    await expect(alert).to_be_visible()
    await phone.get_by_role("button", name="收起").click()
    await expect(alert).to_be_hidden()

    # The change of shift: the phone is handed over, the page never reloaded.
    await phone.get_by_role("button", name="退出").click()
    await phone.get_by_label("用户名").fill(night_leader.name)
    await phone.get_by_label("密码").fill(night_leader.password)
    await phone.get_by_role("button", name="登录").click()
    await expect(phone.locator("#team")).to_contain_text(night_leader.name)

    # The alert went to him too, and he has not seen it: it comes up and rings for him.
    await expect(alert).to_be_visible()
    await expect(alert).to_have_attribute("data-ringing", "true")
    await expect(card_on_phone(phone, incident["id"])).to_have_count(1)


async def reachable_buttons(page: Page, name: str) -> list[str]:
    """The ids of the buttons named ``name`` a tap at their middle would reach (not covered)."""
    found: list[str] = await page.evaluate(
        """(name) => [...document.querySelectorAll('button')]
            .filter((b) => b.textContent.trim() === name && b.getClientRects().length)
            .filter((b) => {
              const r = b.getBoundingClientRect();
              const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
              return hit !== null && b.contains(hit);
            })
            .map((b) => b.id)""",
        name,
    )
    return found


async def test_a_leader_switches_the_language_while_an_alert_covers_the_page(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    await phone.set_viewport_size({"width": 390, "height": 844})
    alert = phone.locator("#alert")
    await world.report(operator, category="fight")
    await expect(alert.locator("#alert-title")).to_contain_text("新警情 · 打架斗殴")

    # The bar's switch lies under the alert: another one on the alert itself is, thumb-sized.
    reachable = await reachable_buttons(phone, "English")
    assert len(reachable) == 1, reachable
    switch = phone.locator(f"#{reachable[0]}")
    box = await switch.bounding_box()
    assert box is not None and box["width"] >= 48 and box["height"] >= 48, box
    await switch.click()

    # The alert stays up, ringing, now in English; and the way back is there too.
    await expect(alert.locator("#alert-title")).to_contain_text("New alert · Fight")
    await expect(alert.get_by_role("button", name="Accept")).to_be_visible()
    await expect(alert).to_have_attribute("data-ringing", "true")
    assert await reachable_buttons(phone, "中文") == reachable
    await switch.click()
    await expect(alert.locator("#alert-title")).to_contain_text("新警情 · 打架斗殴")
    # The page behind follows: the bar's switch says the same once the alert is put away.
    await phone.keyboard.press("Escape")
    await expect(phone.locator("#lang")).to_have_text("English")
