"""A login the administrator ends (the account disabled, the password reset) or that is logged
out elsewhere: the console, the phone and the report page say what happened and what to do, in
Chinese and in English, and neither renew nor reconnect, whether the socket's close or a
request's 401 reaches them first. In headless Chromium against the real server."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.pages.conftest import Opened, ask_report, desk_context, log_in, phone_context, sign_in
from tests.pages.test_console_and_phone import SECOND, away, open_phone
from tests.pages.test_phone_alerts import outbox
from tests.support import Account, World

NEW_PASSWORD = "a-new-long-password"

# What each end of a login is said as: (how the admin ends it, Chinese, English).
ENDS = {
    "disabled": (
        {"disabled": True},
        "账号已停用，请联系管理员",
        "this account was disabled; ask your administrator",
    ),
    "reset": (
        {"password": NEW_PASSWORD},
        "密码已被管理员重置，请用新密码登录",
        "your password was reset by the administrator; log in with the new one",
    ),
}
LOGGED_OUT = ("已退出登录：此登录已在别处退出", "this login was logged out elsewhere")


async def end_login(world: World, user: Account, end: str) -> None:
    admin = await world.admin()
    change = ENDS[end][0]
    reply = await world.http.patch(f"/api/v1/users/{user.id}", json=change, headers=admin.headers)
    assert reply.status_code == 200, reply.text


async def log_out_elsewhere(world: World, page: Page, key: str) -> None:
    token = json.loads(await page.evaluate(f"localStorage.getItem('{key}')"))["token"]
    reply = await world.http.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 204


async def says_signed_out(page: Page, key: str, chinese: str, english: str) -> None:
    """The page is at its login form saying why, in both languages, its token forgotten."""
    await expect(page.locator("#login")).to_be_visible(timeout=15 * SECOND)
    await expect(page.locator("#app")).to_be_hidden()
    error = page.locator("#login-error")
    await expect(error).to_contain_text(chinese)
    await page.locator("#lang").click()
    await expect(error).to_contain_text(english)
    await page.locator("#lang").click()
    await expect(error).to_contain_text(chinese)
    assert await page.evaluate(f"localStorage.getItem('{key}')") is None


def watch_auth_and_sockets(page: Page) -> tuple[list[str], list[str]]:
    """The sockets the page opens and the requests it makes to /auth/ from now on."""
    opened: list[str] = []
    asked: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    page.on("request", lambda r: asked.append(r.url) if "/auth/" in r.url else None)
    return opened, asked


@pytest.mark.parametrize("end", ["disabled", "reset"])
@pytest.mark.parametrize("page_path", ["/console", "/m"])
async def test_a_login_the_administrator_ends_is_said_so_on_console_and_phone(
    world: World, browser: Browser, contexts: Opened, page_path: str, end: str
) -> None:
    """The admin disables a dismissed guard's account, or resets a leader's password: the
    page's socket is closed saying which (4002, 4003), and the page says 账号已停用，请联系管理员
    / 密码已被管理员重置，请用新密码登录 (and in English), not that the login expired, and asks
    the server nothing more: no renewal, no reconnect."""
    if page_path == "/console":
        user = await world.operator()
        page = await (await desk_context(browser, contexts)).new_page()
        await log_in(page, world.base_url + "/console", user)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        key = "dispatch.console.token"
    else:
        user = await world.leader(await world.team("fixed_post"))
        page = await open_phone(browser, contexts, world, user, away(300))
        key = "dispatch.m.token"
    opened, asked = watch_auth_and_sockets(page)
    await end_login(world, user, end)
    _, chinese, english = ENDS[end]
    await says_signed_out(page, key, chinese, english)
    await asyncio.sleep(3)  # past the first reconnect's backoff: none is tried
    assert opened == [] and asked == []
    if end == "reset":
        # The new password lets the leader (or operator) straight back in.
        await sign_in(page, Account(**{**user.__dict__, "password": NEW_PASSWORD}))
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")


class HeldClose:
    """A line that passes everything between page and server but the server's close: the page
    learns its login ended from a request's 401 first, as when the close is still on its way."""

    def __init__(self) -> None:
        self.held: list[int | None] = []

    def handle(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        server.on_close(lambda code, reason: self.held.append(code))

    async def closed(self) -> int | None:
        for _ in range(500):
            if self.held:
                return self.held[0]
            await asyncio.sleep(0.02)
        raise AssertionError("the server did not close the socket")


@pytest.mark.parametrize("end", ["logged_out", "disabled", "reset"])
async def test_a_tap_refused_before_the_socket_closes_says_why_the_login_ended(
    world: World, browser: Browser, contexts: Opened, end: str
) -> None:
    """The server's close has not reached the phone when the leader taps 接警: the tap's own
    401 says why the login ended (logged out elsewhere, disabled, the password reset), and the
    page says so as the close would have, not that the login expired. The tap stays in the
    outbox for the next login."""
    leader = await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    line = HeldClose()
    context = await phone_context(browser, contexts, away(300))
    await context.route_web_socket(re.compile(r"/ws$"), line.handle)
    phone = await context.new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()

    if end == "logged_out":
        await log_out_elsewhere(world, phone, "dispatch.m.token")
        code, (chinese, english) = 4001, LOGGED_OUT
    else:
        await end_login(world, leader, end)
        code = 4002 if end == "disabled" else 4003
        _, chinese, english = ENDS[end]
    assert await line.closed() == code
    await expect(phone.locator("#login")).to_be_hidden()
    async with phone.expect_response(lambda r: r.url.endswith("/accept")) as refused:
        await phone.get_by_role("button", name="接警").click()
    reply = await refused.value
    assert reply.status == 401
    errors = {"logged_out": "logged_out", "disabled": "account_disabled", "reset": "password_reset"}
    assert (await reply.json())["error"] == errors[end]
    await says_signed_out(phone, "dispatch.m.token", chinese, english)
    assert json.loads(await phone.evaluate(outbox(leader)))[0]["action"] == "accept"


@pytest.mark.parametrize("end", ["logged_out", "disabled", "reset"])
async def test_the_report_page_says_why_its_login_ended_at_its_next_request(
    world: World, browser: Browser, contexts: Opened, end: str
) -> None:
    """The report page holds no socket: it learns at its next request. A report asked for, or
    a download (whose 401 said the login expired, even when it was logged out elsewhere), says
    what ended the login."""
    auditor = await world.account("auditor")
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    day = world.clock.now().isoformat()[:10]
    await ask_report(page, day)
    key = "dispatch.console.token"
    assert await page.evaluate(f"localStorage.getItem('{key}')") is not None

    if end == "logged_out":
        await log_out_elsewhere(world, page, key)
        chinese, english = LOGGED_OUT
    else:
        await end_login(world, auditor, end)
        _, chinese, english = ENDS[end]
    async with page.expect_response(lambda r: "/reports/" in r.url) as refused:
        await page.locator("#dl-csv").click()
    assert (await refused.value).status == 401
    await says_signed_out(page, key, chinese, english)


@pytest.mark.parametrize("page_path", ["/console", "/console/reports", "/m"])
async def test_a_disabled_user_signing_in_with_his_right_password_is_told_to_ask_his_admin(
    world: World, browser: Browser, contexts: Opened, page_path: str
) -> None:
    """Told that the name or password was wrong, he retried and called about his password. The
    right password now says the account is disabled, in both languages; a wrong one still says
    only that the name or password is wrong."""
    if page_path == "/m":
        user = await world.leader(await world.team("fixed_post"))
        context = await phone_context(browser, contexts, away(300))
    else:
        user = await world.operator()
        context = await desk_context(browser, contexts)
    await end_login(world, user, "disabled")
    page = await context.new_page()
    await log_in(page, world.base_url + page_path, user)

    error = page.locator("#login-error")
    await expect(error).to_have_text("登录失败：账号已停用，请联系管理员")
    await page.locator("#lang").click()
    await expect(error).to_have_text(
        "Login failed: This account was disabled; ask your administrator"
    )
    await page.locator("#lang").click()
    await expect(page.locator("#app")).to_be_hidden()

    await sign_in(page, Account(**{**user.__dict__, "password": "not-his-password"}))
    await expect(error).to_have_text("登录失败：用户名或密码错误")
    await expect(page.locator("#app")).to_be_hidden()
