"""Signing in to the pages and out of them: the server alone judges a token."""

from __future__ import annotations

from datetime import timedelta

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened, log_in, phone_context
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
