"""A login that outlasts its token's term while the page is open: the phone and the console
renew it in the background, keep their socket and their state, and say ahead of time when a
renewal cannot be had. In headless Chromium against the real server, its clock driven."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.pages.conftest import Opened, desk_context, log_in, phone_context, sign_in
from tests.pages.test_console_and_phone import SECOND, away, open_phone
from tests.pages.test_phone_alerts import accept_on_phone, outbox
from tests.support import World

# A short term, so that half of it passes in seconds of the test's own time.
TERM_S = 12


def kept_token(key: str) -> str:
    return f"JSON.parse(localStorage.getItem('{key}')).token"


async def test_a_phone_open_through_the_shift_renews_its_login_and_keeps_ringing(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The leader who logged in at 08:00 still gets the 20:00 alert, and his 接警 is taken: the
    page renewed the login halfway through its term, and when the old token's socket was closed
    at its expiry (1008) it opened one with the renewed token instead of signing him out."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    world.runtime.settings.token_ttl_s = TERM_S
    phone = await open_phone(browser, contexts, world, leader, away(300))
    first = await phone.evaluate(kept_token("dispatch.m.token"))
    world.clock.advance(TERM_S - 4)
    async with phone.expect_response(
        lambda r: r.url.endswith("/api/v1/auth/renew"), timeout=20 * SECOND
    ) as renewed:
        pass
    assert (await renewed.value).status == 200
    for _ in range(50):
        if await phone.evaluate(kept_token("dispatch.m.token")) != first:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the renewed token was not kept")

    world.clock.advance(6)  # past the first token's expiry, within the renewed one's
    incident = await world.report(operator)
    alert = phone.locator("#alert")
    await expect(alert).to_be_visible(timeout=15 * SECOND)
    await expect(alert).to_contain_text("斗殴")
    assert incident["category"] == "fight"
    await expect(phone.locator("#login")).to_be_hidden()
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    await accept_on_phone(phone)


async def test_a_console_that_cannot_renew_says_when_its_login_ends_and_renews_on_a_tap(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The server out of reach for the renewal: the operator is told, in Chinese and in English,
    at what time his login ends, and 立即续期 renews it once it can, the console as it was."""
    operator = await world.operator()
    world.runtime.settings.token_ttl_s = TERM_S
    console = await (await desk_context(browser, contexts)).new_page()
    refused: list[str] = []

    async def unreachable(route: Route) -> None:
        refused.append(route.request.url)
        await route.abort()

    await console.route("**/api/v1/auth/renew", unreachable)
    await log_in(console, world.base_url + "/console", operator)
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    kept = json.loads(await console.evaluate("localStorage.getItem('dispatch.console.token')"))
    note = console.locator("#session-note")
    await expect(note).to_be_visible(timeout=15 * SECOND)
    assert refused
    shown = kept["expires_at"][11:19]
    await expect(note).to_contain_text(re.compile(f"登录将于 .*{shown} 过期，暂时无法续期"))
    await console.locator("#lang").click()
    await expect(note).to_contain_text(
        re.compile(f"Your login ends at .*{shown} and cannot be renewed now")
    )
    await console.locator("#lang").click()

    await console.unroute("**/api/v1/auth/renew")
    async with console.expect_response(lambda r: r.url.endswith("/api/v1/auth/renew")) as renewed:
        await note.get_by_role("button", name="立即续期").click()
    assert (await renewed.value).status == 200
    await expect(note).to_be_hidden()
    await expect(console.locator("#login")).to_be_hidden()
    again = json.loads(await console.evaluate("localStorage.getItem('dispatch.console.token')"))
    assert again["token"] != kept["token"]


async def test_a_tap_refused_for_an_expired_login_is_kept_and_sent_after_signing_in_again(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A phone that slept through the login's end (its socket not yet closed by the server's
    timer): 接警 is refused 401, the page signs out saying the login expired, and the tap stays
    in the leader's outbox, sent and recorded as soon as he signs in again."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    # Nothing else goes to the phone meanwhile (an escalation or tier 1's deadline at 60 s
    # would, and its socket would then be closed for the expired token before the tap): the
    # tap is the first to find it. A term of 30 s, so that the page's renewal, due at 15 s of
    # its own time, does not come first either.
    world.runtime.settings.escalation_after_s = 7 * 86400
    world.runtime.settings.token_ttl_s = 30
    phone = await open_phone(browser, contexts, world, leader, away(300))
    # The alert put up tells the server it was shown: a request of its own, which must have
    # been answered before the login ends, or its 401 signs the phone out before the tap.
    async with phone.expect_response(lambda r: r.url.endswith("/shown")) as shown:
        incident = await world.report(operator)
        await expect(phone.locator("#alert")).to_be_visible()
    assert (await shown.value).status == 200
    world.clock.advance(31)
    async with phone.expect_response(lambda r: r.url.endswith("/accept")) as refused:
        await phone.get_by_role("button", name="接警").click()
    assert (await refused.value).status == 401
    await expect(phone.locator("#login")).to_be_visible()
    await expect(phone.locator("#login-error")).to_have_text("登录已过期，请重新登录")
    kept = json.loads(await phone.evaluate(outbox(leader)))
    assert [(e["action"], e["dispatch_id"]) for e in kept] == [
        ("accept", incident["dispatches"][0]["id"])
    ]

    async with phone.expect_response(lambda r: r.url.endswith("/accept")) as sent:
        await sign_in(phone, leader)
    assert (await sent.value).status == 200
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    assert await phone.evaluate(outbox(leader)) is None
    stored = await world.incident(await world.relogin(operator), incident["id"])
    assert stored["dispatches"][0]["accepted_at"] is not None


@pytest.mark.parametrize("page_path", ["/console", "/m"])
async def test_a_login_reaching_its_longest_term_is_said_ahead_on_console_and_phone(
    world: World, browser: Browser, contexts: Opened, page_path: str
) -> None:
    """The renewal that reaches DISPATCH_LOGIN_MAX_AGE_S is the login's last: the operator's
    console and the leader's phone say, in Chinese and in English, at what time it ends and that
    it cannot be renewed, offer no renewal, and ask for none again."""
    if page_path == "/console":
        user = await world.operator()
        context = await desk_context(browser, contexts)
    else:
        user = await world.leader(await world.team("fixed_post"))
        context = await phone_context(browser, contexts, away(300))
    world.runtime.settings.token_ttl_s = TERM_S
    world.runtime.settings.login_max_age_s = TERM_S + 4
    page = await context.new_page()
    renewals: list[int] = []
    page.on(
        "response",
        lambda r: renewals.append(r.status) if r.url.endswith("/api/v1/auth/renew") else None,
    )
    await log_in(page, world.base_url + page_path, user)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    world.clock.advance(TERM_S - 4)  # the renewal at half the term reaches the login's end
    note = page.locator("#session-note")
    await expect(note).to_be_visible(timeout=15 * SECOND)
    assert renewals == [200]
    key = "dispatch.console.token" if page_path == "/console" else "dispatch.m.token"
    kept = json.loads(await page.evaluate(f"localStorage.getItem('{key}')"))
    assert kept["expires_at"] == kept["login_expires_at"]
    shown = kept["expires_at"][11:19]
    await expect(note).to_contain_text(re.compile(f"登录将于 .*{shown} 到期，已达最长登录时长"))
    await expect(note.get_by_role("button")).to_be_hidden()
    await page.locator("#lang").click()
    await expect(note).to_contain_text(
        re.compile(f"Your login ends at .*{shown}: it has reached its longest term")
    )
    await asyncio.sleep(3)  # past half of the last term: nothing more is asked
    assert renewals == [200]
    await expect(page.locator("#login")).to_be_hidden()


async def signed_out_elsewhere(world: World, page: Page, key: str) -> list[str]:
    """Log the page's login out from elsewhere (another tab, another device, with the token
    the page holds): the page shows it signed out, in both languages. Returns the sockets it
    opened meanwhile."""
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    token = json.loads(await page.evaluate(f"localStorage.getItem('{key}')"))["token"]
    reply = await world.http.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 204
    await expect(page.locator("#login")).to_be_visible(timeout=15 * SECOND)
    error = page.locator("#login-error")
    await expect(error).to_contain_text("已退出登录")
    await page.locator("#lang").click()
    await expect(error).to_contain_text("Signed out")
    await expect(page.locator("#app")).to_be_hidden()
    assert await page.evaluate(f"localStorage.getItem('{key}')") is None
    return opened


async def test_a_console_logged_out_elsewhere_says_signed_out_and_stops(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The operator's login is ended from another tab: the console's socket is closed as
    logged out (4001), and the console says 已退出登录 / Signed out, not that the login
    expired, and neither renews nor reconnects."""
    operator = await world.operator()
    console = await (await desk_context(browser, contexts)).new_page()
    renewals: list[str] = []
    console.on("request", lambda r: renewals.append(r.url) if "/auth/" in r.url else None)
    await log_in(console, world.base_url + "/console", operator)
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    renewals.clear()
    opened = await signed_out_elsewhere(world, console, "dispatch.console.token")
    await asyncio.sleep(3)  # past the first reconnect's backoff: none is tried
    assert opened == [] and renewals == []


async def test_a_phone_logged_out_elsewhere_says_signed_out_and_stops(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader = await world.leader(await world.team("fixed_post"))
    phone = await open_phone(browser, contexts, world, leader, away(300))
    renewals: list[str] = []
    phone.on("request", lambda r: renewals.append(r.url) if "/auth/" in r.url else None)
    opened = await signed_out_elsewhere(world, phone, "dispatch.m.token")
    await asyncio.sleep(3)  # past the first reconnect's backoff: none is tried
    assert opened == [] and renewals == []
