"""The leader's phone through a bad network, as a leader in the street lives it: offline while an
alert comes, taps made offline, the server restarting, a page frozen in the background, two tabs,
an incident closed while the phone was away. Never an alert lost or twice, never a time recorded
twice or wrongly. In headless Chromium against the real server."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, Page, Request, expect

from tests.conftest import RunningServer
from tests.pages.conftest import Opened, log_in, phone_context
from tests.pages.test_console_and_phone import SECOND, away, card_on_phone, open_phone
from tests.pages.test_phone_alerts import a_fixed_posts_phone, back_and_live, held, outbox
from tests.pages.test_phone_resync import RINGS
from tests.support import Account, World

SHANGHAI = ZoneInfo("Asia/Shanghai")
TOKEN = "JSON.parse(localStorage.getItem('dispatch.m.token')).token"


async def events_of(world: World, operator: Account, incident_id: str) -> list[dict[str, Any]]:
    reply = await world.http.get(
        f"/api/v1/incidents/{incident_id}/events", headers=operator.headers
    )
    assert reply.status_code == 200, reply.text
    events: list[dict[str, Any]] = reply.json()
    return events


def kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def answered(path: str) -> tuple[list[Request], Any]:
    """The requests to ``path`` that the server answered, gathered by the returned handler."""
    seen: list[Request] = []

    async def on_finished(request: Request) -> None:
        if request.url.endswith(path) and await request.response() is not None:
            seen.append(request)

    return seen, on_finished


async def go_offline(phone: Page) -> None:
    await phone.context.set_offline(True)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "offline")


async def come_back(phone: Page) -> None:
    await phone.context.set_offline(False)
    await expect(phone.locator("#conn")).to_have_attribute(
        "data-state", "live", timeout=15 * SECOND
    )


async def test_an_alert_that_comes_while_the_phone_is_offline_shows_once_when_back(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    phone = await open_phone(browser, contexts, world, leader, away(300))
    await phone.evaluate(RINGS)

    await go_offline(phone)
    incident = await world.report(operator)
    world.clock.advance(20)
    await come_back(phone)

    alert = phone.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(phone.locator("#missed")).to_have_text("离线期间漏收 1 条派警，已补收，待您处理")
    stored = await world.wait_for(
        operator,
        incident["id"],
        lambda i: i["dispatches"][0]["delivered_at"] and i["dispatches"][0]["shown_at"],
    )
    # Delivered when the phone had it, on its return: not at the report.
    delivered = datetime.fromisoformat(stored["dispatches"][0]["delivered_at"])
    assert delivered == world.clock.now()
    await expect(phone.locator("#incidents article.incident")).to_have_count(1)
    # Another drop and return brings nothing twice.
    await go_offline(phone)
    await come_back(phone)
    await expect(phone.locator("#incidents article.incident")).to_have_count(1)
    assert await phone.evaluate("window.__rings") == 1
    events = await events_of(world, operator, incident["id"])
    assert len(kinds(events, "delivered")) == 1
    assert len(kinds(events, "shown")) == 1


async def test_accept_and_arrive_tapped_offline_are_sent_once_and_timed_at_receipt(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    incident = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()
    accepts, on_accept = answered("/accept")
    arrivals, on_arrive = answered("/arrive")
    phone.on("requestfinished", on_accept)
    phone.on("requestfinished", on_arrive)

    await go_offline(phone)
    world.clock.advance(5)
    await phone.get_by_role("button", name="接警").click()
    line = phone.locator("#alert-outbox")
    await expect(line).to_contain_text("接警未发出", timeout=15 * SECOND)
    await expect(line).to_contain_text("已保存在本机，连上服务器后自动补发")
    await expect(phone.locator("#accept")).to_have_text("接警待发送")
    await expect(phone.locator("#alert")).to_have_attribute("data-ringing", "false")
    await phone.get_by_role("button", name="已到场").click()
    await expect(line).to_contain_text("到场未发出", timeout=15 * SECOND)
    kept = json.loads(await phone.evaluate(outbox(leader)))
    assert [entry["action"] for entry in kept] == ["accept", "arrive"]

    world.clock.advance(40)
    back = world.clock.now()
    await come_back(phone)
    # The times shown are the server's, in Beijing time.
    shown = back.astimezone(SHANGHAI).strftime("%H:%M:%S")
    await expect(phone.locator("#arrive")).to_have_text(f"已到场 {shown}", timeout=15 * SECOND)
    await expect(phone.locator("#outbox")).to_be_hidden()
    assert await phone.evaluate(outbox(leader)) is None
    stored = await world.incident(operator, incident["id"])
    dispatch = stored["dispatches"][0]
    # The server's time at receipt, not the taps' (the phone's clock goes beside them).
    assert datetime.fromisoformat(dispatch["accepted_at"]) == back
    assert datetime.fromisoformat(dispatch["arrived_at"]) == back
    assert not dispatch["accepted_implied"]
    events = await events_of(world, operator, incident["id"])
    (accepted,) = kinds(events, "accepted")
    assert datetime.fromisoformat(accepted["data"]["device_time"]) == datetime.fromisoformat(
        kept[0]["body"]["device_time"]
    )
    assert len(kinds(events, "arrived")) == 1
    assert len(accepts) == 1
    assert len(arrivals) == 1


async def test_a_server_restart_while_the_phone_is_open_loses_no_alert(
    world: World, server: RunningServer, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    await phone.evaluate(RINGS)
    await server.stop()
    await expect(phone.locator("#conn")).not_to_have_attribute("data-state", "live")
    async with back_and_live(server, phone):
        incident = await world.report(operator)
        await expect(phone.locator("#alert")).to_be_visible()
        await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["shown_at"])
        assert await phone.evaluate("window.__rings") == 1
        await expect(phone.locator("#load-problem")).to_be_hidden()


async def test_two_tabs_of_one_leader_ring_once_each_and_an_answer_on_one_quiets_the_other(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader, operator, first = await a_fixed_posts_phone(world, browser, contexts)
    second = await first.context.new_page()
    await second.goto(world.base_url + "/m")
    await expect(second.locator("#conn")).to_have_attribute("data-state", "live")
    incident = await world.report(operator)
    for tab in (first, second):
        await expect(tab.locator("#alert")).to_be_visible()
    await first.get_by_role("button", name="接警").click()
    await expect(first.locator("#accept")).to_contain_text("已接警")
    await expect(second.locator("#accept")).to_contain_text("已接警")
    await expect(second.locator("#alert")).to_have_attribute("data-ringing", "false")
    events = await events_of(world, operator, incident["id"])
    assert len(kinds(events, "delivered")) == 1
    assert len(kinds(events, "accepted")) == 1
    del leader


async def test_a_tap_kept_in_one_tab_survives_the_other_tabs_taps(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, first = await a_fixed_posts_phone(world, browser, contexts)
    second = await first.context.new_page()
    await second.goto(world.base_url + "/m")
    await expect(second.locator("#conn")).to_have_attribute("data-state", "live")
    one = await world.report(operator, category="fight")
    await expect(first.locator("#alert")).to_contain_text("打架斗殴")
    await expect(second.locator("#alert")).to_contain_text("打架斗殴")
    world.clock.advance(1)
    # The first tab's accept does not get through (a line that fails it).
    await first.route("**/accept", lambda route: route.abort())
    await first.get_by_role("button", name="接警").click()
    await expect(first.locator("#alert-outbox")).to_contain_text("接警未发出", timeout=15 * SECOND)
    # The second tab is used for another alert meanwhile: put away what is on screen, open it
    # from the list and accept it, recorded.
    other = await world.report(operator, category="fire")
    row = card_on_phone(second, other["id"])
    await expect(row).to_be_visible()
    while await second.locator("#alert").is_visible():
        await second.keyboard.press("Escape")
    await row.get_by_role("button").click()
    await expect(second.locator("#alert-title")).to_contain_text("火情")
    await second.get_by_role("button", name="接警").click()
    await expect(card_on_phone(second, other["id"])).to_contain_text("已接警")
    # The first tab is closed (swiped away) before its tap went. The phone still has it (the
    # second tab may send it first): recorded.
    await first.close()
    again = await second.context.new_page()
    await again.goto(world.base_url + "/m")
    await expect(card_on_phone(again, one["id"])).to_contain_text("已接警", timeout=15 * SECOND)
    await world.wait_for(
        operator, one["id"], lambda i: i["dispatches"][0]["accepted_at"], timeout=15
    )


async def test_an_incident_closed_while_the_phone_was_offline_says_so_when_back(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    incident = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()
    await go_offline(phone)
    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#alert-outbox")).to_contain_text("接警未发出", timeout=15 * SECOND)
    closed = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert closed.status_code == 200, closed.text
    await come_back(phone)
    await expect(phone.locator("#alert-title")).to_have_text("警情已结案")
    await expect(phone.locator("#alert-outbox")).to_have_text("接警未记录：警情已结案")
    await expect(phone.locator("#accept")).to_be_disabled()
    await expect(phone.locator("#alert")).to_have_attribute("data-ringing", "false")
    await expect(card_on_phone(phone, incident["id"])).to_have_count(0)
    stored = await world.incident(operator, incident["id"])
    assert stored["dispatches"][0]["accepted_at"] is None


async def test_a_page_frozen_in_the_background_rings_for_what_came_once_it_is_back(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    await phone.evaluate(RINGS)
    cdp = await phone.context.new_cdp_session(phone)
    await cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
    incident = await world.report(operator)
    world.clock.advance(30)
    await phone.wait_for_timeout(1000)
    await cdp.send("Page.setWebLifecycleState", {"state": "active"})
    await expect(phone.locator("#alert")).to_be_visible()
    stored = await world.wait_for(
        operator, incident["id"], lambda i: i["dispatches"][0]["shown_at"]
    )
    assert stored["dispatches"][0]["delivered_at"] is not None
    assert await phone.evaluate("window.__rings") == 1
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")


async def test_an_arrival_tapped_while_the_acceptance_is_on_a_slow_line_goes_after_it(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The leader taps 接警 on a slow line and, the scene round the corner, 已到场 before the
    acceptance's answer came: the server records the acceptance as tapped, then the arrival,
    not the arrival first with an acceptance it implied (the tap's own time lost)."""
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    incident = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()
    released = await held(phone, "**/accept")
    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#accept")).to_have_text("接警发送中…")
    world.clock.advance(20)
    await phone.get_by_role("button", name="已到场").click()
    await expect(phone.locator("#alert-outbox")).to_contain_text("到场发送中")
    await phone.wait_for_timeout(500)
    world.clock.advance(1)
    released.set()
    await expect(phone.locator("#arrive")).to_contain_text("已到场")
    stored = await world.incident(operator, incident["id"])
    dispatch = stored["dispatches"][0]
    assert not dispatch["accepted_implied"]
    events = await events_of(world, operator, incident["id"])
    (accepted,) = kinds(events, "accepted")
    assert accepted["data"].get("device_time") is not None
    assert datetime.fromisoformat(dispatch["accepted_at"]) <= datetime.fromisoformat(
        dispatch["arrived_at"]
    )


async def test_an_alert_closed_before_the_offline_phone_came_back_does_not_ring(
    world: World, browser: Browser, contexts: Opened
) -> None:
    _leader, operator, phone = await a_fixed_posts_phone(world, browser, contexts)
    await phone.evaluate(RINGS)
    await go_offline(phone)
    incident = await world.report(operator)
    closed = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert closed.status_code == 200, closed.text
    await come_back(phone)
    await expect(phone.locator("#incidents .hint")).to_be_visible()
    await expect(phone.locator("#alert")).to_be_hidden()
    await expect(phone.locator("#missed")).to_be_hidden()
    assert await phone.evaluate("window.__rings") == 0
    stored = await world.incident(operator, incident["id"])
    assert stored["dispatches"][0]["delivered_at"] is None


async def test_a_renewal_due_while_the_server_restarts_is_had_once_it_is_back(
    world: World, server: RunningServer, browser: Browser, contexts: Opened
) -> None:
    """The login's renewal falls due while the server is down: the page tries again once it is
    back, keeps the leader signed in, and rings for the next alert on the renewed login."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    world.runtime.settings.token_ttl_s = 12
    phone = await open_phone(browser, contexts, world, leader, away(300))
    first = await phone.evaluate(TOKEN)
    await server.stop()
    await expect(phone.locator("#conn")).not_to_have_attribute("data-state", "live")
    # Past half the term (6 s by the phone's own clock): the renewal is due and fails.
    await phone.wait_for_timeout(7000)
    world.clock.advance(8)  # the first token has 4 s left by the server's clock
    async with back_and_live(server, phone):
        for _ in range(100):
            if await phone.evaluate(TOKEN) != first:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the login was not renewed once the server was back")
        world.clock.advance(6)  # past the first token's expiry, within the renewed one's
        await world.report(operator)
        await expect(phone.locator("#alert")).to_be_visible(timeout=15 * SECOND)
        await expect(phone.locator("#login")).to_be_hidden()
        await expect(phone.locator("#session-note")).to_be_hidden()


async def test_a_tap_kept_offline_on_a_phone_whose_clock_is_wrong_says_the_servers_time(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The phone's clock is ten minutes fast: the line saying when the kept tap was made reads
    the server's time, as every other time on the page does, not the phone's own."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    context = await phone_context(browser, contexts, away(300))
    await context.clock.set_system_time(world.clock.now() + timedelta(minutes=10))
    phone = await context.new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()
    await go_offline(phone)
    await phone.get_by_role("button", name="接警").click()
    line = phone.locator("#alert-outbox")
    await expect(line).to_contain_text("接警未发出", timeout=15 * SECOND)
    tapped = re.search(r"（(\d\d:\d\d:\d\d) 点击）", await line.inner_text())
    assert tapped is not None
    now = world.clock.now().astimezone(SHANGHAI)
    at = datetime.combine(now.date(), time.fromisoformat(tapped[1]), SHANGHAI)
    apart = (at - now).total_seconds() % 86400  # a time of day: midnight may lie between
    # The server's clock stands still in the test; the page's runs on from it by the seconds
    # the test took, and the phone's own is ten minutes off.
    assert min(apart, 86400 - apart) < 120, (tapped[1], now)
    kept = json.loads(await phone.evaluate(outbox(leader)))
    # What goes to the server is the phone's own clock, as it was.
    device = datetime.fromisoformat(kept[0]["body"]["device_time"])
    assert (device - now).total_seconds() > 9 * 60
