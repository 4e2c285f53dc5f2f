"""Signing in to the pages and out of them: the server alone judges a token."""

from __future__ import annotations

import json
from datetime import timedelta

from playwright.async_api import Browser, Page, expect

from tests.pages.conftest import Opened, desk_context, log_in, phone_context
from tests.support import QINGXI, World


async def test_a_phone_whose_clock_is_a_day_ahead_logs_in_until_the_server_ends_the_token(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader = await world.leader(await world.team("fixed_post"))
    context = await phone_context(browser, contexts, QINGXI)
    # Set by hand, with no network time: past the token's 12 h by the phone's own clock.
    await context.clock.set_system_time(world.clock.now() + timedelta(hours=13))
    page = await context.new_page()
    await log_in(page, world.base_url + "/m", leader)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await page.reload()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    # By the server's clock the token has now expired: the page signs out, saying so.
    world.clock.advance(world.runtime.settings.token_ttl_s + 1)
    await page.reload()
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#login-error")).to_have_text("登录已过期，请重新登录")
    assert await page.evaluate("localStorage.getItem('dispatch.m.token')") is None


async def stored_token(page: Page, key: str) -> str | None:
    stored = await page.evaluate(f"localStorage.getItem({key!r})")
    return json.loads(stored)["token"] if stored else None


async def test_log_out_on_the_console_ends_the_token_on_the_server(
    world: World, browser: Browser, contexts: Opened
) -> None:
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console", await world.operator())
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    token = await stored_token(page, "dispatch.console.token")

    async with page.expect_response("**/api/v1/auth/logout") as ended:
        await page.get_by_role("button", name="退出").click()
    assert (await ended.value).status == 204
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#login-error")).to_have_text("")
    # A token left on a shared console works no more, wherever it was copied to.
    reply = await world.http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 401, reply.text


async def test_a_phone_that_cannot_reach_the_server_still_logs_out(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader = await world.leader(await world.team("fixed_post"))
    page = await (await phone_context(browser, contexts, QINGXI)).new_page()
    await log_in(page, world.base_url + "/m", leader)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    await page.route("**/api/v1/auth/logout", lambda route: route.abort())
    await page.get_by_role("button", name="退出").click()
    await expect(page.locator("#login")).to_be_visible()
    assert await stored_token(page, "dispatch.m.token") is None
    await page.reload()
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()


# Private mode, or an in-app browser with storage turned off: every use of either throws.
STORAGE_OFF = """
for (const area of ['localStorage', 'sessionStorage']) {
  Object.defineProperty(window, area, {
    get() {
      throw new DOMException('The operation is insecure.', 'SecurityError');
    },
  });
}
"""


async def test_a_browser_without_storage_keeps_the_sign_in_and_the_choices_for_the_page(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    context = await desk_context(browser, contexts)
    await context.add_init_script(STORAGE_OFF)
    page = await context.new_page()
    assert await page.evaluate("(() => { try { localStorage; } catch (e) { return e.name; } })()")
    await log_in(page, world.base_url + "/console", operator)
    # The token, read back from memory by every request and by the socket.
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # The tab's feed (kept for the tab at every line) and the language: in memory as well.
    await world.report(operator, category="fire")
    await expect(page.locator("#feed li").first).to_contain_text("新警情：火情")
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#feed li").first).to_contain_text("New incident: Fire")
    async with page.expect_response("**/api/v1/auth/logout") as ended:
        await page.get_by_role("button", name="Log out").click()
    assert (await ended.value).status == 204
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
